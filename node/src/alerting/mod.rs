//! Alerting on the node. The logic (rule files, the state machine, routing, payloads) lives in
//! pharos-alert; this module runs it in the cluster:
//!
//! - rule files and routing configuration are validated here and stored, versioned, in the meta group;
//! - each shard's leader runs an alert actor ([`run_on_leader`]): evaluators for the rule groups the ring
//!   places on the shard ([`evaluate`]) and a notification dispatcher ([`dispatch`]) delivering through
//!   [`deliver`]; what must survive a failover is committed in the shard's Raft state ([`store`]);
//! - the actor starts when this node wins the shard's election and is aborted when it steps down; the
//!   next leader loads the committed state and carries on (same `active_since`, same notification logs).

pub mod deliver;
pub mod dispatch;
pub mod evaluate;
pub mod store;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use pharos_raft::NodeId;

use crate::config::Config;
use crate::ingest::Ingest;
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::query::Queries;
use crate::replicas::{LeaderService, Replicas, ShardReplica};
use crate::routing::Router;
use crate::rpc::Client;

/// What the alert actors use of the node.
pub struct Alerting {
    pub me: NodeId,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub router: Router,
    pub replicas: Arc<Replicas>,
    pub meta: Arc<Meta>,
    pub client: Arc<Client>,
    pub ingest: Arc<Ingest>,
    pub queries: Arc<Queries>,
    /// Every shard's alerts, for the dispatchers of the shards this node leads.
    pub view: Arc<view::ClusterView>,
}

impl Alerting {
    /// The alert actor as a leader service: it runs on each shard replica while it leads.
    pub fn leader_service(self: &Arc<Self>) -> LeaderService {
        let ctx = self.clone();
        Arc::new(move |replica| Box::pin(run_on_leader(ctx.clone(), replica)))
    }
}

/// The alert actor of one shard, for as long as this node leads it.
async fn run_on_leader(ctx: Arc<Alerting>, replica: Arc<ShardReplica>) {
    let shard = replica.shard;
    // Everything committed under earlier leaders must be applied here before the state is read.
    let mut wait = Duration::from_millis(50);
    loop {
        if crate::shard_rpc::barrier(&replica, ctx.me).await.is_ok() {
            break;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
    let (shared, groups) = match store::load(&ctx, shard) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(shard, cause = %e, "loading alert state; the alert actor does not run on this shard");
            return;
        }
    };
    let dispatcher = tokio::spawn(dispatch::run(ctx.clone(), shard, groups));
    // Abort the dispatcher with us (a leadership change aborts this future).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _dispatcher = AbortOnDrop(dispatcher);
    evaluate::supervise(ctx, shard, shared).await;
}

/// Checks a rule file: its shape, durations, labels, templates, and that every `expr` plans as a query.
/// Returns the number of groups and rules, or every problem found (with line numbers, and the file name
/// when given).
pub fn validate(file: Option<&str>, text: &str) -> Result<(usize, usize), String> {
    let parsed = match file {
        Some(f) => pharos_alert::rules::parse_rule_file_named(f, text),
        None => pharos_alert::rules::parse_rule_file(text),
    };
    match parsed {
        Ok(file) => Ok((file.groups.len(), file.groups.iter().map(|g| g.rules.len()).sum())),
        Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
    }
}

/// Checks a routing configuration; returns the number of receivers or every problem found.
pub fn validate_routing(file: Option<&str>, text: &str) -> Result<usize, String> {
    let parsed = match file {
        Some(f) => pharos_alert::parse_routing_config_named(f, text),
        None => pharos_alert::parse_routing_config(text),
    };
    match parsed {
        Ok(c) => Ok(c.receivers.len()),
        Err(errors) => Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
    }
}

/// The silences stored in the meta group, in id order.
pub fn silences(meta: &Meta) -> Vec<pharos_alert::Silence> {
    let meta = meta.state();
    meta.silences.values().filter_map(|j| serde_json::from_str(j).ok()).collect()
}

/// A silence from the API: matchers parsed, start defaulting to now, an id made up when none is given.
pub fn silence_from_proto(s: pharos_proto::v1::SilenceInfo, now_ms: i64) -> Result<pharos_alert::Silence, String> {
    let mut matchers = Vec::new();
    for m in &s.matchers {
        matchers.push(pharos_alert::Matcher::parse(m).map_err(|e| format!("matcher {m:?}: {e}"))?);
    }
    let starts_at = if s.starts_at_ms == 0 { now_ms } else { s.starts_at_ms };
    let id = if s.id.is_empty() {
        let seed = format!("{now_ms}/{}/{}/{}", s.matchers.join(","), s.created_by, s.comment);
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
    } else {
        s.id
    };
    let silence = pharos_alert::Silence {
        id,
        matchers,
        starts_at,
        ends_at: s.ends_at_ms,
        created_by: s.created_by,
        comment: s.comment,
    };
    silence.validate().map_err(|e| e.to_string())?;
    Ok(silence)
}

pub fn silence_to_proto(s: &pharos_alert::Silence, now_ms: i64) -> pharos_proto::v1::SilenceInfo {
    let state = match s.state(now_ms) {
        pharos_alert::silence::SilenceState::Pending => "pending",
        pharos_alert::silence::SilenceState::Active => "active",
        pharos_alert::silence::SilenceState::Expired => "expired",
    };
    pharos_proto::v1::SilenceInfo {
        id: s.id.clone(),
        matchers: s.matchers.iter().map(|m| m.to_string()).collect(),
        starts_at_ms: s.starts_at,
        ends_at_ms: s.ends_at,
        created_by: s.created_by.clone(),
        comment: s.comment.clone(),
        state: state.into(),
    }
}

/// Every alert instance in the cluster, read from each shard's leader (linearizable), sorted by rule and
/// labels.
pub async fn list_alerts(client: &Arc<Client>, shards: u32) -> Result<Vec<pharos_proto::v1::AlertInstance>, String> {
    let mut out = Vec::new();
    for (shard, rules) in store::fetch_rules(client, shards).await {
        for r in rules? {
            for i in r.state.instances.values() {
                let tags = |l: &pharos_alert::Labels| {
                    l.iter().map(|(k, v)| pharos_proto::v1::Tag { key: k.clone(), value: v.clone() }).collect()
                };
                out.push(pharos_proto::v1::AlertInstance {
                    rule: r.name.clone(),
                    group: r.group.clone(),
                    state: i.state.as_str().into(),
                    active_since_ms: i.active_since,
                    fired_at_ms: i.fired_at.unwrap_or(0),
                    resolved_at_ms: i.resolved_at.unwrap_or(0),
                    value: i.value,
                    labels: tags(&i.labels),
                    annotations: tags(&i.annotations),
                    shard,
                });
            }
        }
    }
    let key = |a: &pharos_proto::v1::AlertInstance| {
        (a.rule.clone(), a.labels.iter().map(|t| (t.key.clone(), t.value.clone())).collect::<Vec<_>>())
    };
    out.sort_by_cached_key(key);
    Ok(out)
}
