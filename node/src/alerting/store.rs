//! What the alert actor of a shard keeps in Raft, and its in-memory view on the leader.
//!
//! Both live in the shard's replicated key-value state ([`Command::State`]), so they are committed by a
//! quorum, survive restarts and travel in snapshots:
//!
//! | key                         | value (JSON)    | written                                                 |
//! |-----------------------------|-----------------|---------------------------------------------------------|
//! | `alert/<group>/<rule>`      | [`StoredRule`]  | after an evaluation that changed the rule's instances   |
//! | `notify/<xxh3(group key)>`  | [`StoredGroup`] | after a receiver acknowledged a notification (the log)  |
//!
//! The outbox is the difference between the two: alerts committed as firing (or resolved) that a
//! receiver's notification log does not cover yet. A new leader loads both and sends what is missing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::error::{ClientWriteError, RaftError};
use std::time::Duration;

use pharos_alert::{NotifyLog, RuleState};
use pharos_raft::Request;
use pharos_storage::Command;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::Alerting;
use crate::error::chain;
use crate::rpc::{fan_out, Client};
use crate::shard_rpc::{ShardRequest, ShardResponse};

pub const RULE_PREFIX: &str = "alert/";
pub const NOTIFY_PREFIX: &str = "notify/";

/// The committed state of one alerting rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRule {
    pub group: String,
    /// The rule's alert name.
    pub name: String,
    pub state: RuleState,
}

/// The notification log of one notification group: what each integration of its receiver was last told
/// (and acknowledged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGroup {
    pub group_key: String,
    pub receiver: String,
    pub logs: BTreeMap<String, NotifyLog>,
}

pub fn rule_key(rule_key: &str) -> Vec<u8> {
    format!("{RULE_PREFIX}{rule_key}").into_bytes()
}

pub fn notify_key(group_key: &str) -> Vec<u8> {
    format!("{NOTIFY_PREFIX}{:016x}", xxh3_64(group_key.as_bytes())).into_bytes()
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("alert state serializes")
}

/// The latest state of every rule of a shard, kept by its evaluators on the leader. It runs ahead of what
/// is committed only in values that need no commit (see `evaluate`); dispatchers read the committed state
/// ([`super::view`]).
pub struct ShardAlerts {
    pub rules: Mutex<BTreeMap<String, StoredRule>>,
}

/// Every shard's committed rule states, read from each shard's leader (linearizable), in shard order.
pub async fn fetch_rules(client: &Arc<Client>, shards: u32) -> Vec<(u32, Result<Vec<StoredRule>, String>)> {
    let req = Arc::new(ShardRequest::State { prefix: RULE_PREFIX.as_bytes().to_vec() });
    let answers = fan_out(0..shards, |&s| {
        let (client, req) = (client.clone(), req.clone());
        async move { client.shard_request(s, &req, true, Duration::from_secs(5)).await }
    })
    .await;
    let mut out: Vec<_> = answers
        .into_iter()
        .map(|(shard, a)| {
            let rules = match a {
                Ok(ShardResponse::State(kv)) => {
                    Ok(kv.into_iter().filter_map(|(_, v)| serde_json::from_slice::<StoredRule>(&v).ok()).collect())
                }
                Ok(_) => Err(format!("shard {shard}: unexpected answer")),
                Err(e) => Err(chain(&e)),
            };
            (shard, rules)
        })
        .collect();
    out.sort_by_key(|(s, _)| *s);
    out
}

/// Loads a shard's committed alert state from its engine (on a replica that has applied everything
/// committed: the leader after a read-index round).
pub fn load(ctx: &Alerting, shard: u32) -> Result<(Arc<ShardAlerts>, Vec<StoredGroup>), String> {
    let r = ctx.replicas.get(shard).ok_or_else(|| format!("no replica of shard {shard} here"))?;
    let e = r.engine.read().map_err(|_| "engine lock poisoned".to_string())?;
    let mut rules = BTreeMap::new();
    for (k, v) in e.state_scan(RULE_PREFIX.as_bytes()).map_err(|e| e.to_string())? {
        let key = String::from_utf8_lossy(&k[RULE_PREFIX.len()..]).into_owned();
        match serde_json::from_slice::<StoredRule>(&v) {
            Ok(s) => {
                rules.insert(key, s);
            }
            Err(err) => tracing::error!(shard, key, cause = %err, "unreadable alert state; the rule starts afresh"),
        }
    }
    let mut groups = Vec::new();
    for (k, v) in e.state_scan(NOTIFY_PREFIX.as_bytes()).map_err(|e| e.to_string())? {
        match serde_json::from_slice::<StoredGroup>(&v) {
            Ok(g) => groups.push(g),
            Err(err) => {
                tracing::error!(shard, key = %String::from_utf8_lossy(&k), cause = %err, "unreadable notification log")
            }
        }
    }
    Ok((Arc::new(ShardAlerts { rules: Mutex::new(rules) }), groups))
}

/// Commits puts and deletes of alert state through the shard's Raft group (this node must lead it).
pub async fn commit(
    ctx: &Alerting,
    shard: u32,
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
) -> Result<(), String> {
    if puts.is_empty() && deletes.is_empty() {
        return Ok(());
    }
    let r = ctx.replicas.get(shard).ok_or_else(|| format!("no replica of shard {shard} here"))?;
    match r.raft.client_write(Request::Shard(Command::State { puts, deletes })).await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err("no longer the leader".into()),
        Err(e) => Err(e.to_string()),
    }
}
