//! A node's Raft groups: the meta group and the replicas of the shards placed on it, their bootstrap, and
//! where each shard's leader is.
//!
//! Bootstrap is deterministic: every founding node computes the same initial shard placement from the
//! `--initial-cluster` list, creates the groups of its own replicas, and the first replica of each group
//! initializes it. The meta group (on every founding node) records the placement for later changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use pharos_raft::log_store::LogStore;
use pharos_raft::meta::{initial_placement, MetaCommand, MetaStateMachine};
use pharos_raft::network::{Channels, Network};
use pharos_raft::shard_sm::ShardStateMachine;
use pharos_raft::spool::Spool;
use pharos_raft::{shard_group, NodeAddr, NodeId, Raft, Request, META_GROUP};
use pharos_storage::Retention;
use rocksdb::DB;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::{parse_initial_cluster, Config};
use crate::disk::Disk;
use crate::error::NodeError;
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::replicas::{Replicas, ShardReplica};
use crate::rpc::Client;
use crate::writer::ShardWriter;

/// Where `pharos restore` builds a node's database before moving it into place as `db` (see
/// `crate::backup`): a data directory holding it and no `db` is a restore that did not finish.
pub const RESTORING: &str = "db.restoring";

/// This node's Raft groups and the client that reaches the others'.
pub struct Cluster {
    pub id: NodeId,
    pub db: Arc<DB>,
    pub meta: Arc<Meta>,
    pub replicas: Arc<Replicas>,
    pub peers: Arc<Peers>,
    pub client: Arc<Client>,
    pub disk: Arc<Disk>,
    metrics: Arc<Metrics>,
    shutdown: broadcast::Sender<()>,
    opener: Opener,
    /// Serializes replica opening and closing.
    reconciling: tokio::sync::Mutex<()>,
    /// Replicas closed because their Raft group stopped on an error, until they are open again.
    stopped: std::sync::Mutex<BTreeSet<u32>>,
}

/// What opening a shard replica takes, kept so replicas come and go while the node runs.
struct Opener {
    id: NodeId,
    db: Arc<DB>,
    spool: Spool,
    syncer: pharos_raft::syncer::Syncer,
    raft_config: Arc<openraft::Config>,
    retention: Arc<Retention>,
    channels: Channels,
    engine: pharos_storage::EngineOptions,
    write: crate::config::WriteConfig,
    cache_entries: usize,
    metrics: Arc<Metrics>,
    disk: Arc<Disk>,
    shutdown: broadcast::Sender<()>,
    series_limits: crate::series_limits::SeriesLimits,
    meta: Arc<Meta>,
}

impl Opener {
    /// Opens this node's replica of a shard; `initialize` with its first members when it founds the group.
    async fn open(
        &self,
        shard: u32,
        initialize: Option<BTreeMap<NodeId, NodeAddr>>,
    ) -> Result<Arc<ShardReplica>, NodeError> {
        let (db, id) = (self.db.clone(), self.id);
        let sm = ShardStateMachine::open(
            db.clone(),
            shard,
            self.retention.clone(),
            self.engine.clone(),
            self.spool.clone(),
        )?;
        let engine = sm.engine();
        let sm_gone = sm.gone();
        let snapshots = sm.preparer();
        let group = shard_group(shard);
        let log = LogStore::with_syncer(db.clone(), group, self.syncer.clone());
        if sm.interrupted_import() {
            tracing::warn!(
                shard,
                "the replica starts empty after an interrupted snapshot install; its leader sends one again"
            );
            log.reset().map_err(|e| NodeError::Raft(format!("shard {shard}: emptying the log: {e}")))?;
        }
        let log_cache = log.cache();
        let raft = Raft::new(
            id,
            self.raft_config.clone(),
            Network { group, channels: self.channels.clone(), cache: log_cache.clone() },
            log,
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        if let Some(members) = initialize {
            if !raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))? {
                raft.initialize(members).await.map_err(|e| NodeError::Raft(e.to_string()))?;
            }
        }
        let limiter = self.series_limits.any().then(|| crate::series_limits::Limiter {
            limits: self.series_limits,
            engine: engine.clone(),
            meta: self.meta.clone(),
        });
        let writer = ShardWriter::spawn(
            shard,
            raft.clone(),
            &self.write,
            self.metrics.clone(),
            self.disk.clone(),
            limiter,
            self.shutdown.subscribe(),
        );
        let query_cache = Arc::new(std::sync::Mutex::new(pharos_query::cache::ShardCache::new(self.cache_entries)));
        Ok(Arc::new(ShardReplica {
            shard,
            raft,
            log_cache,
            engine,
            writer,
            query_cache,
            sm_gone,
            snapshots,
            leader_contact: std::sync::Mutex::new(None),
        }))
    }
}

impl Cluster {
    /// Opens the database and starts every Raft group this node hosts. A founding node (`--initial-cluster`,
    /// or alone) computes the founding placement; a joining node (`--join`) starts empty and learns the
    /// cluster from the meta group.
    pub async fn start(
        config: &Config,
        id: NodeId,
        metrics: Arc<Metrics>,
        shutdown: broadcast::Sender<()>,
    ) -> Result<Cluster, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::DataDir(config.data_dir.clone(), e))?;
        let restoring = config.data_dir.join(RESTORING);
        if restoring.exists() && !config.data_dir.join("db").exists() {
            return Err(NodeError::Identity(format!(
                "{} holds a restore that did not finish: run `pharos restore BACKUP` again with the same flags (it \
                 starts over), then start the node",
                config.data_dir.display()
            )));
        }
        let db = pharos_storage::db::open(&config.data_dir.join("db"), &config.storage.db()).map_err(|e| {
            // RocksDB says only "IO error: While lock file: .../LOCK: Resource temporarily unavailable".
            match &e {
                pharos_storage::StorageError::Rocks(r) if r.to_string().contains("lock file") => {
                    NodeError::DataDirInUse(config.data_dir.clone())
                }
                _ => e.into(),
            }
        })?;
        let members: BTreeMap<NodeId, String> = match (&config.initial_cluster, &config.join) {
            (Some(ic), _) => parse_initial_cluster(ic)?,
            (None, Some(_)) => BTreeMap::new(),
            (None, None) => BTreeMap::from([(id, config.advertised_grpc())]),
        };
        let ids: Vec<NodeId> = members.keys().copied().collect();
        let placement =
            if ids.is_empty() { Vec::new() } else { initial_placement(&ids, config.shards, config.replication_factor) };
        let channels = Channels::with_snapshot_rate(config.rebalance.max_bytes_per_sec)
            .with_chunk_timeout(Duration::from_millis(config.raft.install_snapshot_timeout_ms));
        let channels = crate::tls::peer_channels(channels, config).map_err(NodeError::Tls)?;
        let syncer = pharos_raft::syncer::Syncer::start(db.clone());
        let raft_config = config.raft.to_openraft("pharos").map_err(|e| NodeError::Raft(e.to_string()))?;
        let retention = Arc::new(Retention::new(config.retention.clone())?);

        // Snapshots in transit, in the data directory (they can be as large as a shard).
        let spool_dir = config.data_dir.join("spool");
        let spool = Spool::new(&spool_dir).map_err(|e| NodeError::DataDir(spool_dir, e))?;
        let meta_sm = MetaStateMachine::open(db.clone(), META_GROUP, spool.clone())
            .map_err(|e| NodeError::Raft(e.to_string()))?;
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
        let first = ids.first().copied();
        if first == Some(id) && !meta.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))? {
            let m: BTreeMap<NodeId, NodeAddr> = ids.iter().map(|n| (*n, addr_of(n))).collect();
            info!(nodes = ?ids, "initializing the meta group");
            meta.initialize(m).await.map_err(|e| NodeError::Raft(e.to_string()))?;
        }

        // The meta group's recorded placement wins over the founding one once it exists.
        let meta = Arc::new(Meta::new(meta, meta_log_cache, meta_state, placement.clone()));
        let replicas = Arc::new(Replicas::new(id));
        let disk = Disk::new(config.data_dir.clone(), config.storage.min_free_bytes);
        disk.spawn(metrics.clone());
        let peers = Arc::new(Peers::new(id, my_http.clone(), members.clone(), meta.clone(), channels.clone()));
        let client = Arc::new(Client::new(replicas.clone(), meta.clone(), peers.clone(), metrics.clone()));
        let opener = Opener {
            id,
            db: db.clone(),
            spool,
            syncer,
            raft_config,
            retention,
            channels,
            engine: config.storage.engine(),
            write: config.write.clone(),
            cache_entries: config.query.cache_entries,
            metrics: metrics.clone(),
            disk: disk.clone(),
            shutdown: shutdown.clone(),
            series_limits: crate::series_limits::SeriesLimits::from_config(&config.limits),
            meta: meta.clone(),
        };
        // The founding replicas: the first replica of each shard founds its group (once).
        let effective = meta.placement();
        for (shard, members_of_shard) in effective.iter().enumerate() {
            if !members_of_shard.contains(&id) {
                continue;
            }
            let founding = placement.get(shard).filter(|p| p.first() == Some(&id) && *p == members_of_shard);
            let init = founding.map(|p| p.iter().map(|n| (*n, addr_of(n))).collect());
            replicas.insert(opener.open(shard as u32, init).await?);
        }
        // Record the founding placement in the meta group (ignored when one exists).
        if first == Some(id) {
            let client = client.clone();
            let nodes: BTreeMap<NodeId, NodeAddr> = ids.iter().map(|x| (*x, addr_of(x))).collect();
            let cmd = MetaCommand::Batch(vec![
                MetaCommand::Bootstrap { nodes, shards: placement },
                crate::join::record_shape(config.shards, config.replication_factor),
            ]);
            tokio::spawn(async move {
                for _ in 0..120 {
                    match client.meta_write(&cmd, Duration::from_secs(1)).await {
                        Ok(_) => return,
                        Err(e) => tracing::debug!(cause = %e, "meta bootstrap not yet possible"),
                    }
                }
                warn!("could not record the shard placement in the meta group");
            });
        }
        Ok(Cluster {
            id,
            db,
            meta,
            replicas,
            peers,
            client,
            disk,
            metrics,
            shutdown,
            opener,
            reconciling: tokio::sync::Mutex::new(()),
            stopped: Default::default(),
        })
    }

    /// The shards this node should hold a replica of now: those the placement gives it, and those a
    /// running move is bringing to it.
    fn desired(&self) -> BTreeSet<u32> {
        let state = self.meta.state();
        let mut out: BTreeSet<u32> =
            state.shards.iter().enumerate().filter(|(_, r)| r.contains(&self.id)).map(|(s, _)| s as u32).collect();
        if state.shards.is_empty() {
            return self.replicas.all().iter().map(|r| r.shard).collect(); // not bootstrapped yet: keep all
        }
        let (plan, _) = crate::rebalance::Plan::read(&state);
        out.extend(plan.incoming(self.id));
        out
    }

    /// Opens the replicas this node should hold and does not, and closes (and deletes) those it holds and
    /// should not, as the meta group's placement and the running moves say.
    pub async fn reconcile(&self) {
        let _one_at_a_time = self.reconciling.lock().await;
        let desired = self.desired();
        for r in self.replicas.all() {
            if desired.contains(&r.shard) {
                self.close_if_stopped(r.shard).await;
            }
        }
        let held: BTreeSet<u32> = self.replicas.all().iter().map(|r| r.shard).collect();
        for shard in desired.difference(&held) {
            let stopped = self.stopped.lock().expect("stopped replicas lock").contains(shard);
            match self.opener.open(*shard, None).await {
                Ok(r) if stopped => {
                    info!(shard, "replica reopened");
                    self.stopped.lock().expect("stopped replicas lock").remove(shard);
                    self.replicas.insert(r);
                }
                Ok(r) => {
                    info!(shard, "replica opened (a move brings this shard here)");
                    self.replicas.insert(r);
                }
                Err(e) => warn!(shard, cause = %e, "opening a replica (tried again in a few seconds)"),
            }
        }
        for shard in held.difference(&desired) {
            if let Err(e) = self.close_replica(*shard).await {
                warn!(shard, cause = %e, "closing a replica that moved away");
            }
        }
        // A replica closed after a storage error whose shard moved away meanwhile: its data goes too.
        let gone: Vec<u32> = {
            let mut stopped = self.stopped.lock().expect("stopped replicas lock");
            let gone = stopped.iter().copied().filter(|s| !desired.contains(s)).collect();
            stopped.retain(|s| desired.contains(s));
            gone
        };
        for shard in gone {
            if let Err(e) = self.delete_replica_data(shard).await {
                warn!(shard, cause = %e, "deleting the data of a stopped replica that moved away");
            }
        }
        self.exit_if_meta_stopped();
    }

    /// The meta group stopped on an error (its storage failed: a full disk) cannot be reopened in place
    /// (every part of the node holds it): the node exits, saying why, for its service manager to restart
    /// it; it opens again from what it made durable once the disk has room.
    fn exit_if_meta_stopped(&self) {
        let why = match &self.meta.raft.metrics().borrow().running_state {
            Err(openraft::error::Fatal::Stopped) | Ok(()) => return,
            Err(e) => e.to_string(),
        };
        tracing::error!(
            cause = %why,
            "the meta group stopped on a storage error: exiting so the node restarts from its durable state \
             (free disk space first if it is full; see docs/reliability.md)"
        );
        std::process::exit(1);
    }

    /// Closes a replica whose Raft group stopped on an error (openraft stops a group when its storage
    /// fails: a full disk) once the disk has room again, keeping its data, so that `reconcile` opens it again
    /// from what it made durable; the group catches up from its log and its peers. A group stopped on
    /// purpose (shutdown) is left alone.
    async fn close_if_stopped(&self, shard: u32) {
        let Some(r) = self.replicas.get(shard) else { return };
        let why = match &r.raft.metrics().borrow().running_state {
            Err(openraft::error::Fatal::Stopped) | Ok(()) => return,
            Err(e) => e.to_string(),
        };
        if !self.disk.room_to_reopen() {
            warn!(
                shard,
                cause = %why,
                free = self.disk.free(),
                "the replica's Raft group stopped on an error; it reopens once the disk has room"
            );
            return;
        }
        warn!(shard, cause = %why, "the replica's Raft group stopped on an error; reopening it");
        let _ = r.raft.shutdown().await;
        // Out of the registry only once its state machine has ended: a second one must never run beside it.
        if tokio::time::timeout(Duration::from_secs(60), r.sm_gone.clone().wait()).await.is_err() {
            warn!(shard, "the stopped replica's state machine did not end within 60 s; it is tried again later");
            return;
        }
        self.stopped.lock().expect("stopped replicas lock").insert(shard);
        self.replicas.remove(shard);
        drop(r);
        // Opened again by the next round of `reconcile` (this one, or a few seconds later while RocksDB
        // resumes writing after its own out-of-space error).
    }

    /// Stops this node's replica of a shard and deletes its log and data (the shard moved away).
    async fn close_replica(&self, shard: u32) -> Result<(), NodeError> {
        let Some(r) = self.replicas.remove(shard) else { return Ok(()) };
        r.raft.shutdown().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        // Applies already queued still run after shutdown: deleting under them would corrupt what they
        // read and leave what they write behind.
        if tokio::time::timeout(Duration::from_secs(60), r.sm_gone.clone().wait()).await.is_err() {
            return Err(NodeError::Raft(format!(
                "shard {shard}: the replica's state machine did not stop within 60 s; its data is kept"
            )));
        }
        self.delete_replica_data(shard).await?;
        info!(shard, "replica closed and its data deleted (the shard moved to other nodes)");
        Ok(())
    }

    /// Deletes a closed replica's log and data.
    async fn delete_replica_data(&self, shard: u32) -> Result<(), NodeError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
            LogStore::new(db.clone(), shard_group(shard)).destroy().map_err(|e| NodeError::Raft(e.to_string()))?;
            pharos_storage::ShardEngine::drop_data(&db, shard)?;
            Ok(())
        })
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
    }

    /// Keeps the local replicas in line with the meta group (every change, and every few seconds).
    pub fn spawn_reconciler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut changes = me.meta.subscribe();
            loop {
                crate::meta::changed_within(&mut changes, Duration::from_secs(5)).await;
                me.reconcile().await;
            }
        })
    }

    /// Refreshes per-shard gauges.
    pub fn update_gauges(&self) {
        self.metrics.replicas_held.set(self.replicas.all().len() as i64);
        let (plan, _) = crate::rebalance::Plan::read(&self.meta.state());
        for (state, n) in [
            ("queued", plan.queued.len()),
            ("running", plan.running.len()),
            ("done", plan.done as usize),
            ("failed", plan.failed as usize),
        ] {
            self.metrics.rebalance_moves.with_label_values(&[state]).set(n as i64);
        }
        for r in self.replicas.all() {
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
    /// family. Normal operation does most of this by itself (maintenance every `write.maintenance_interval`;
    /// snapshots, purges and an idle group's compaction by the log keeper, `log_keeper.rs`); this does it
    /// now and all of it, for measuring bytes on disk, or before a backup. Returns the groups snapshotted.
    pub async fn compact(&self, within: Duration) -> Result<usize, NodeError> {
        let now_ms = crate::clock::now_ms();
        for r in self.replicas.all() {
            if r.leads() {
                let cmd = Request::Shard(pharos_storage::Command::Maintain { now_ms });
                r.raft.client_write(cmd).await.map_err(|e| NodeError::Raft(e.to_string()))?;
            }
        }
        let mut groups: Vec<Raft> = self.replicas.all().iter().map(|r| r.raft.clone()).collect();
        groups.push(self.meta.raft.clone());
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
        for r in self.replicas.all() {
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
        let _ = self.meta.raft.shutdown().await;
        if let Err(e) = self.db.flush_wal(true) {
            warn!(cause = %e, "flushing the RocksDB WAL at shutdown");
        }
    }
}
