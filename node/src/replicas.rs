//! The shard replicas this node holds, and the actors that run on a replica while it leads its shard.
//!
//! A leader service (maintenance, the alert actor) is registered once, with [`Replicas::on_leader`]; it
//! then runs on every replica this node holds or adds later, from the moment the replica wins its shard's
//! election until it loses it (`pharos_raft::leadership::spawn_while_leader`). The registry knows nothing
//! of what the services do, so the modules that define them depend on it and not the other way round.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use openraft::ServerState;
use pharos_raft::log_store::LogCache;
use pharos_raft::shard_sm::SharedEngine;
use pharos_raft::{NodeId, Raft};

use crate::writer::ShardWriter;

/// One local replica of a shard.
pub struct ShardReplica {
    pub shard: u32,
    pub raft: Raft,
    /// The group's recent log entries, shared by its log store and its Raft transport.
    pub log_cache: LogCache,
    pub engine: SharedEngine,
    pub writer: ShardWriter,
    /// Answers of whole buckets for repeated dashboard queries (pharos-query's cache).
    pub query_cache: Arc<std::sync::Mutex<pharos_query::cache::ShardCache>>,
    /// Resolves when openraft's state machine task for this replica has ended (after shutdown).
    pub sm_gone: pharos_raft::shard_sm::Gone,
    /// Exports the shard's snapshot ahead of a move (off openraft's state-machine task).
    pub snapshots: pharos_raft::shard_sm::SnapshotPreparer,
    /// When this replica last accepted an AppendEntries (heartbeats included) from its leader.
    pub leader_contact: Mutex<Option<std::time::Instant>>,
}

impl ShardReplica {
    pub fn leads(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    pub fn heard_from_leader(&self) {
        *self.leader_contact.lock().expect("contact lock") = Some(std::time::Instant::now());
    }

    /// Whether this replica's state is recent enough for a stale read: a leader that a quorum acknowledged,
    /// or a follower that heard from its leader, within the election timeout. A replica cut off, or frozen
    /// and just resumed, sends the reader to its leader instead of answering from an old state.
    pub fn recent(&self) -> bool {
        let within = self.raft.config().election_timeout_min;
        let m = self.raft.metrics();
        let m = m.borrow();
        match m.state {
            // The only voter is its own quorum.
            ServerState::Leader => {
                m.membership_config.membership().voter_ids().count() == 1
                    || m.millis_since_quorum_ack.is_some_and(|ms| ms < within)
            }
            ServerState::Follower => {
                m.current_leader.is_some()
                    && self
                        .leader_contact
                        .lock()
                        .expect("contact lock")
                        .is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(within))
            }
            _ => false,
        }
    }
}

/// An actor run on a replica while it leads: given the replica, returns the future to run (aborted when
/// leadership is lost).
pub type LeaderService = Arc<dyn Fn(Arc<ShardReplica>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct Replicas {
    me: NodeId,
    map: RwLock<BTreeMap<u32, Arc<ShardReplica>>>,
    services: Mutex<Vec<LeaderService>>,
}

impl Replicas {
    pub fn new(me: NodeId) -> Replicas {
        Replicas { me, map: RwLock::new(BTreeMap::new()), services: Mutex::new(Vec::new()) }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn get(&self, shard: u32) -> Option<Arc<ShardReplica>> {
        self.map.read().expect("replicas lock").get(&shard).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ShardReplica>> {
        self.map.read().expect("replicas lock").values().cloned().collect()
    }

    /// Adds a replica and starts the registered leader services on it.
    pub fn insert(&self, replica: Arc<ShardReplica>) {
        let services = self.services.lock().expect("services lock");
        for s in services.iter() {
            spawn_service(s.clone(), &replica);
        }
        self.map.write().expect("replicas lock").insert(replica.shard, replica);
        drop(services);
    }

    /// Takes a replica out of the registry (it is being closed).
    pub fn remove(&self, shard: u32) -> Option<Arc<ShardReplica>> {
        self.map.write().expect("replicas lock").remove(&shard)
    }

    /// Registers a leader service: it runs on every replica held now or added later, while it leads.
    pub fn on_leader(&self, service: LeaderService) {
        let mut services = self.services.lock().expect("services lock");
        for r in self.all() {
            spawn_service(service.clone(), &r);
        }
        services.push(service);
    }

    /// True when this node's replica leads the shard.
    pub fn leads(&self, shard: u32) -> bool {
        self.get(shard).is_some_and(|r| r.leads())
    }

    /// The shard's leader as this node's replica sees it.
    pub fn leader_seen(&self, shard: u32) -> Option<NodeId> {
        self.get(shard).and_then(|r| r.raft.metrics().borrow().current_leader)
    }

    /// Whether the local replica may serve a stale read (see [`ShardReplica::recent`]): a stale read then
    /// lags the leader by at most about an election timeout plus replication lag, also right after this
    /// node was frozen or cut off.
    pub fn serves_stale(&self, shard: u32) -> bool {
        self.get(shard).is_some_and(|r| r.recent())
    }
}

fn spawn_service(service: LeaderService, replica: &Arc<ShardReplica>) {
    let r = replica.clone();
    pharos_raft::leadership::spawn_while_leader(&replica.raft, move || service(r.clone()));
}
