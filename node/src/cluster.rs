//! A node's Raft groups: the meta group and the replicas of the shards placed on it, their bootstrap, and
//! where each shard's leader is.
//!
//! Bootstrap is deterministic: every founding node computes the same initial shard placement from the
//! `--initial-cluster` list, creates the groups of its own replicas, and the first replica of each group
//! initializes it. The meta group (on every founding node) records the placement for later changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use pharos_raft::log_store::{LogCache, LogStore};
use pharos_raft::meta::{initial_placement, MetaCommand, MetaResponse, MetaState, MetaStateMachine};
use pharos_raft::network::{Channels, Network};
use pharos_raft::shard_sm::{ShardStateMachine, SharedEngine};
use pharos_raft::{shard_group, NodeAddr, NodeId, Raft, Request, Response, META_GROUP};
use pharos_storage::Retention;
use rocksdb::DB;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::{parse_initial_cluster, Config};
use crate::error::NodeError;
use crate::metrics::Metrics;
use crate::routing::Router;
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
}

pub struct Node {
    pub id: NodeId,
    pub config: Config,
    pub db: Arc<DB>,
    pub channels: Channels,
    pub meta: Raft,
    pub meta_log_cache: LogCache,
    pub meta_state: Arc<RwLock<MetaState>>,
    pub shards: RwLock<BTreeMap<u32, Arc<ShardReplica>>>,
    pub router: Router,
    pub metrics: Arc<Metrics>,
    /// Founding placement, used until the meta group has recorded one.
    initial_placement: Vec<Vec<NodeId>>,
    /// gRPC address of every node we know of.
    peers: RwLock<BTreeMap<NodeId, String>>,
    /// Last leader seen per shard (from forwarding replies), for shards without a local replica.
    leader_cache: RwLock<HashMap<u32, NodeId>>,
    pub shutdown: broadcast::Sender<()>,
    /// Scraping, once started (by the server, after the node).
    pub scraping: std::sync::OnceLock<Arc<crate::scrape::Scraping>>,
}

impl Node {
    /// Opens the database and starts every Raft group this node hosts.
    pub async fn start(config: Config, shutdown: broadcast::Sender<()>) -> Result<Arc<Node>, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::DataDir(config.data_dir.clone(), e))?;
        let db = pharos_storage::db::open(&config.data_dir.join("db"), &config.storage.db()).map_err(|e| {
            // RocksDB says only "IO error: While lock file: .../LOCK: Resource temporarily unavailable".
            match &e {
                pharos_storage::StorageError::Rocks(r) if r.to_string().contains("lock file") => {
                    NodeError::DataDirInUse(config.data_dir.clone())
                }
                _ => e.into(),
            }
        })?;
        let id = config.node_id;
        let members: BTreeMap<NodeId, String> = match &config.initial_cluster {
            Some(ic) => parse_initial_cluster(ic)?,
            None => BTreeMap::from([(id, config.advertised_grpc())]),
        };
        if config.join.is_some() {
            return Err(NodeError::Unsupported("--join: adding a node to a running cluster is not built yet; start every node with the same --initial-cluster"));
        }
        let ids: Vec<NodeId> = members.keys().copied().collect();
        let placement = initial_placement(&ids, config.shards, config.replication_factor);
        let channels = Channels::default();
        let syncer = pharos_raft::syncer::Syncer::start(db.clone());
        let raft_config = config.raft.to_openraft("pharos").map_err(|e| NodeError::Raft(e.to_string()))?;
        let metrics = Arc::new(Metrics::new(id));
        let retention = Arc::new(Retention::new(config.retention.clone())?);

        let meta_sm = MetaStateMachine::open(db.clone(), META_GROUP).map_err(|e| NodeError::Raft(e.to_string()))?;
        let meta_state = meta_sm.state();
        let meta_log = LogStore::with_syncer(db.clone(), META_GROUP, syncer.clone());
        let meta_log_cache = meta_log.cache();
        let meta = Raft::new(
            id,
            raft_config.clone(),
            Network { group: META_GROUP, channels: channels.clone(), cache: meta_log_cache.clone() },
            meta_log,
            meta_sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let my_http = config.http_addr.to_string();
        let addr_of = |n: &NodeId| NodeAddr {
            grpc: members[n].clone(),
            http: if *n == id { my_http.clone() } else { String::new() },
        };
        let first = *ids.first().expect("at least this node");
        if first == id && !meta.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))? {
            let m: BTreeMap<NodeId, NodeAddr> = ids.iter().map(|n| (*n, addr_of(n))).collect();
            info!(nodes = ?ids, "initializing the meta group");
            meta.initialize(m).await.map_err(|e| NodeError::Raft(e.to_string()))?;
        }

        // The meta group's recorded placement wins over the founding one once it exists.
        let recorded = meta_state.read().expect("meta lock").shards.clone();
        let effective = if recorded.is_empty() { placement.clone() } else { recorded };
        let node = Arc::new(Node {
            id,
            db: db.clone(),
            channels: channels.clone(),
            meta,
            meta_log_cache,
            meta_state,
            shards: RwLock::new(BTreeMap::new()),
            router: Router::new(config.shards),
            metrics: metrics.clone(),
            initial_placement: placement.clone(),
            peers: RwLock::new(members.clone()),
            leader_cache: RwLock::new(HashMap::new()),
            shutdown: shutdown.clone(),
            scraping: std::sync::OnceLock::new(),
            config,
        });
        for (shard, replicas) in effective.iter().enumerate() {
            if !replicas.contains(&id) {
                continue;
            }
            let shard = shard as u32;
            let sm = ShardStateMachine::open(db.clone(), shard, retention.clone(), node.config.storage.engine())?;
            let engine = sm.engine();
            let group = shard_group(shard);
            let log = LogStore::with_syncer(db.clone(), group, syncer.clone());
            let log_cache = log.cache();
            let raft = Raft::new(
                id,
                raft_config.clone(),
                Network { group, channels: channels.clone(), cache: log_cache.clone() },
                log,
                sm,
            )
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
            if replicas[0] == id && !raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))? {
                let m: BTreeMap<NodeId, NodeAddr> = replicas.iter().map(|n| (*n, addr_of(n))).collect();
                raft.initialize(m).await.map_err(|e| NodeError::Raft(e.to_string()))?;
            }
            let writer =
                ShardWriter::spawn(shard, raft.clone(), &node.config.write, metrics.clone(), shutdown.subscribe());
            // Maintenance runs on the shard's leader only, started and stopped with leadership.
            let (r, every) = (raft.clone(), node.config.write.maintenance_interval);
            pharos_raft::leadership::spawn_while_leader(&raft, move || {
                crate::writer::maintenance(shard, r.clone(), every)
            });
            // So does the alert actor of the rule groups placed on this shard.
            let n = node.clone();
            pharos_raft::leadership::spawn_while_leader(&raft, move || {
                crate::alerting::run_on_leader(n.clone(), shard)
            });
            let query_cache =
                Arc::new(std::sync::Mutex::new(pharos_query::cache::ShardCache::new(node.config.query.cache_entries)));
            node.shards
                .write()
                .expect("shards lock")
                .insert(shard, Arc::new(ShardReplica { shard, raft, log_cache, engine, writer, query_cache }));
        }
        // Record the founding placement in the meta group (ignored when one exists).
        if first == id {
            let n = node.clone();
            let nodes: BTreeMap<NodeId, NodeAddr> = ids.iter().map(|x| (*x, addr_of(x))).collect();
            tokio::spawn(async move {
                let cmd = MetaCommand::Bootstrap { nodes, shards: n.initial_placement.clone() };
                for _ in 0..600 {
                    match n.meta_write(cmd.clone()).await {
                        Ok(_) => return,
                        Err(e) => {
                            tracing::debug!(cause = %e, "meta bootstrap not yet possible");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                warn!("could not record the shard placement in the meta group");
            });
        }
        Ok(node)
    }

    pub fn replica(&self, shard: u32) -> Option<Arc<ShardReplica>> {
        self.shards.read().expect("shards lock").get(&shard).cloned()
    }

    pub fn local_replicas(&self) -> Vec<Arc<ShardReplica>> {
        self.shards.read().expect("shards lock").values().cloned().collect()
    }

    /// Replicas of every shard (meta group's record, else the founding placement).
    pub fn placement(&self) -> Vec<Vec<NodeId>> {
        let recorded = self.meta_state.read().expect("meta lock").shards.clone();
        if recorded.is_empty() {
            self.initial_placement.clone()
        } else {
            recorded
        }
    }

    pub fn peer_addr(&self, node: NodeId) -> Option<String> {
        if let Some(a) = self.meta_state.read().expect("meta lock").nodes.get(&node) {
            return Some(a.grpc.clone());
        }
        self.peers.read().expect("peers lock").get(&node).cloned()
    }

    pub fn known_nodes(&self) -> BTreeMap<NodeId, NodeAddr> {
        let mut out: BTreeMap<NodeId, NodeAddr> = self
            .peers
            .read()
            .expect("peers lock")
            .iter()
            .map(|(id, g)| (*id, NodeAddr { grpc: g.clone(), http: String::new() }))
            .collect();
        for (id, a) in &self.meta_state.read().expect("meta lock").nodes {
            out.insert(*id, a.clone());
        }
        if let Some(me) = out.get_mut(&self.id) {
            me.http = self.config.http_addr.to_string();
        }
        out
    }

    /// Best guess of a shard's leader: the local replica's view, then the last hint, then its first replica.
    pub fn leader_of(&self, shard: u32) -> Option<NodeId> {
        if let Some(r) = self.replica(shard) {
            if let Some(l) = r.raft.metrics().borrow().current_leader {
                return Some(l);
            }
        }
        if let Some(l) = self.leader_cache.read().expect("leader cache lock").get(&shard) {
            return Some(*l);
        }
        self.placement().get(shard as usize).and_then(|r| r.first().copied())
    }

    pub fn note_leader(&self, shard: u32, leader: NodeId) {
        self.leader_cache.write().expect("leader cache lock").insert(shard, leader);
    }

    /// Commits a command in the meta group, forwarding to its leader when needed.
    pub async fn meta_write(&self, cmd: MetaCommand) -> Result<MetaResponse, NodeError> {
        match self.meta.client_write(Request::Meta(cmd.clone())).await {
            Ok(resp) => match resp.data {
                Response::Meta(m) => Ok(m),
                other => Err(NodeError::Raft(format!("unexpected meta response {other:?}"))),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f.leader_id.ok_or(NodeError::NoLeader("meta"))?;
                let addr = f
                    .leader_node
                    .map(|n| n.grpc)
                    .or_else(|| self.peer_addr(leader))
                    .ok_or(NodeError::NoLeader("meta"))?;
                let mut client = self.channels.get(&addr).map_err(|e| NodeError::Forward(e.to_string()))?;
                let payload = bincode::serialize(&cmd).expect("meta commands serialize");
                let reply = client
                    .forward_meta(pharos_proto::internal::RaftRequest { group: META_GROUP, payload })
                    .await
                    .map_err(|s| NodeError::Forward(s.to_string()))?
                    .into_inner();
                if !reply.error.is_empty() {
                    return Err(NodeError::Forward(reply.error));
                }
                bincode::deserialize(&reply.payload).map_err(|e| NodeError::Forward(e.to_string()))
            }
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// True when this node leads the shard.
    /// Whether the local replica may serve a stale read: it leads, or follows a leader it hears from. A
    /// follower cut off from its leader becomes a candidate after an election timeout and stops qualifying,
    /// so a stale read lags the leader by at most about an election timeout plus replication lag.
    pub fn serves_stale(&self, shard: u32) -> bool {
        self.replica(shard).is_some_and(|r| {
            let m = r.raft.metrics();
            let m = m.borrow();
            match m.state {
                ServerState::Leader => true,
                ServerState::Follower => m.current_leader.is_some_and(|l| l != self.id),
                _ => false,
            }
        })
    }

    pub fn is_leader(&self, shard: u32) -> bool {
        self.replica(shard).is_some_and(|r| r.raft.metrics().borrow().state == ServerState::Leader)
    }

    /// Refreshes per-shard gauges.
    pub fn update_gauges(&self) {
        for r in self.local_replicas() {
            let m = r.raft.metrics().borrow().clone();
            let s = r.shard.to_string();
            self.metrics.shard_leader.with_label_values(&[&s]).set((m.state == ServerState::Leader) as i64);
            self.metrics
                .shard_applied
                .with_label_values(&[&s])
                .set(m.last_applied.map(|l| l.index).unwrap_or(0) as i64);
            if let Ok(e) = r.engine.try_read() {
                self.metrics.series.with_label_values(&[&s]).set(e.series_count() as i64);
                self.metrics.head_samples.with_label_values(&[&s]).set(e.samples_in_heads() as i64);
                self.metrics.rollup_pending.with_label_values(&[&s]).set(e.pending_rollup_series() as i64);
                let (m1, h1) = e.rollup_watermarks();
                for (tier, wm) in [("1m", m1), ("1h", h1)] {
                    if let Some(ms) = wm {
                        self.metrics.rollup_watermark.with_label_values(&[&s, tier]).set(ms.div_euclid(1000));
                    }
                }
            }
            self.metrics.queue_depth.with_label_values(&[&s]).set(r.writer.queued() as i64);
        }
        let prop = |cf: &str, name: &str| {
            let cf = self.db.cf_handle(cf)?;
            self.db.property_int_value_cf(cf, name).ok().flatten()
        };
        let memtables = pharos_storage::db::memtable_bytes(&self.db);
        self.metrics.rocksdb_memory.with_label_values(&["memtables"]).set(memtables as i64);
        // One cache shared by every column family: any one reports it.
        let cache = prop(pharos_storage::db::CF_CHUNKS, "rocksdb.block-cache-usage").unwrap_or(0);
        self.metrics.rocksdb_memory.with_label_values(&["block_cache"]).set(cache as i64);
    }

    /// Shrinks the data directory to the data: the shards this node leads run maintenance now (sealing idle
    /// heads, building the rollups of closed periods), every local group takes a snapshot (shard engines
    /// checkpoint their heads), purges its Raft log up to it, then RocksDB flushes and compacts every column
    /// family. Normal operation does all this by itself over time (maintenance every
    /// `write.maintenance_interval`, a snapshot every `raft.snapshot_after_entries`); this brings a node
    /// that just took a bulk load to that state, for measuring bytes on disk, or before a backup. Returns the
    /// groups snapshotted.
    pub async fn compact(&self, within: Duration) -> Result<usize, NodeError> {
        let now_ms = crate::query::now_ms();
        for r in self.local_replicas() {
            if self.is_leader(r.shard) {
                let cmd = Request::Shard(pharos_storage::Command::Maintain { now_ms });
                r.raft.client_write(cmd).await.map_err(|e| NodeError::Raft(e.to_string()))?;
            }
        }
        let mut groups: Vec<Raft> = self.local_replicas().iter().map(|r| r.raft.clone()).collect();
        groups.push(self.meta.clone());
        let deadline = tokio::time::Instant::now() + within;
        for raft in &groups {
            raft.trigger().snapshot().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        }
        for raft in &groups {
            // The snapshot covers what was applied when it was asked for; then its log can go.
            let target = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
            loop {
                let m = raft.metrics().borrow().clone();
                if m.snapshot.map(|s| s.index).unwrap_or(0) >= target {
                    if let Some(s) = m.snapshot {
                        raft.trigger().purge_log(s.index).await.map_err(|e| NodeError::Raft(e.to_string()))?;
                    }
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    warn!("compaction: a snapshot did not finish in time; its log stays");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Purges run in the background: give them until the deadline.
        for raft in &groups {
            let want = raft.metrics().borrow().snapshot.map(|s| s.index);
            while raft.metrics().borrow().purged.map(|p| p.index) < want && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<(), rocksdb::Error> {
            for name in pharos_storage::db::ALL_CFS {
                let cf = pharos_storage::db::cf(&db, name);
                db.flush_cf(cf)?;
                db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
            Ok(())
        })
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
        .map_err(|e| NodeError::Raft(format!("compacting RocksDB: {e}")))?;
        Ok(groups.len())
    }

    /// Stops every group: pending writes finish or fail, then engines checkpoint so restart replays little.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(());
        for r in self.local_replicas() {
            if let Err(e) = r.raft.shutdown().await {
                warn!(shard = r.shard, cause = %e, "raft shutdown");
            }
            match r.engine.write() {
                Ok(mut e) => {
                    if let Err(err) = e.checkpoint() {
                        warn!(shard = r.shard, cause = %err, "checkpoint at shutdown");
                    }
                }
                Err(_) => warn!(shard = r.shard, "engine lock poisoned at shutdown"),
            }
        }
        let _ = self.meta.shutdown().await;
        if let Err(e) = self.db.flush_wal(true) {
            warn!(cause = %e, "flushing the RocksDB WAL at shutdown");
        }
    }
}
