//! The state machine of a shard group: a [`ShardEngine`] behind a lock, shared with readers.
//!
//! The engine stores an opaque *mark* with each checkpoint; here the mark is the bincode of the last applied
//! log id and membership, so after a restart openraft learns where the durable state ends and re-applies the
//! log after it (the engine's apply is idempotent).
//!
//! Snapshots are not kept: building one checkpoints the engine (its RocksDB state is the snapshot, so the log
//! before it can be purged) and records only its position. A replica that needs a snapshot gets a fresh
//! export of the engine at that moment, at or after the recorded position; so no copy of a shard's data is
//! held in memory or on disk between transfers. A transfer streams: the export is written to a [`Spool`] file
//! that openraft sends in chunks, the receiver writes the chunks to a spool file and imports from it.

use std::io::{BufReader, BufWriter, Seek, Write};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, RaftLogId, StorageIOError};
use pharos_storage::{EngineOptions, Retention, ShardEngine};
use rocksdb::DB;

use crate::spool::{self, Spool};
use crate::types::{
    Entry, LogId, Request, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

pub type SharedEngine = Arc<RwLock<ShardEngine>>;

pub struct ShardStateMachine {
    engine: SharedEngine,
    db: Arc<DB>,
    shard: u32,
    retention: Arc<Retention>,
    opts: EngineOptions,
    spool: Spool,
    /// An import of a snapshot was cut off before this open: the replica holds nothing (see
    /// [`ShardStateMachine::interrupted_import`]).
    interrupted_import: bool,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// Dropped with the state machine: see [`ShardStateMachine::gone`].
    alive: tokio::sync::watch::Sender<()>,
    /// Where the last snapshot built or installed ends (None before the first: openraft then builds one
    /// itself where it needs it).
    current: Arc<Mutex<Option<SnapshotMeta>>>,
    /// An export made ahead for the next replica that needs a snapshot ([`SnapshotPreparer`]).
    prepared: Arc<Mutex<Option<Prepared>>>,
}

/// An export of the shard made off openraft's state-machine task, with where it ends and when it was made.
struct Prepared {
    meta: SnapshotMeta,
    file: std::fs::File,
    at: std::time::Instant,
}

/// A prepared export older than this is not sent (a newer one is made instead).
const PREPARED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Exports a shard's snapshot ahead of need. openraft 0.9 asks for the snapshot to send
/// (`get_current_snapshot`) on the group's state-machine task and waits there, so an export made then
/// holds up every apply of the shard for as long as it takes (seconds per GB). One prepared just before a
/// new replica is added is what that call then hands out, at once.
#[derive(Clone)]
pub struct SnapshotPreparer {
    db: Arc<DB>,
    engine: SharedEngine,
    shard: u32,
    spool: Spool,
    slot: Arc<Mutex<Option<Prepared>>>,
}

impl SnapshotPreparer {
    /// Exports the shard now (on a blocking thread; applies go on), replacing any earlier export.
    pub async fn prepare(&self) -> Result<u64, String> {
        let (db, engine, shard, spool) = (self.db.clone(), self.engine.clone(), self.shard, self.spool.clone());
        let (meta, file) = tokio::task::spawn_blocking(move || export_to_spool(&db, &engine, shard, &spool))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let at = std::time::Instant::now();
        *self.slot.lock().expect("prepared snapshot lock") = Some(Prepared { meta, file, at });
        // Not taken in time (the new replica caught up from the log): its disk space is given back.
        let slot = self.slot.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PREPARED_FOR).await;
            let mut slot = slot.lock().expect("prepared snapshot lock");
            if slot.as_ref().is_some_and(|p| p.at == at) {
                *slot = None;
            }
        });
        Ok(bytes)
    }
}

impl SnapshotPreparer {
    /// Exports the shard now for a backup (on a blocking thread; applies go on): the file, rewound, and the
    /// position it holds (the last applied log id and membership). Not kept for a replica.
    pub async fn export(&self) -> Result<(SnapshotMeta, std::fs::File), String> {
        let (db, engine, shard, spool) = (self.db.clone(), self.engine.clone(), self.shard, self.spool.clone());
        tokio::task::spawn_blocking(move || export_to_spool(&db, &engine, shard, &spool))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Replaces a shard's data on this node by a backup's export (`pharos restore`, before the node starts):
/// the data is checked and written aside before it is swapped in (see [`ShardEngine::import`]), and the
/// replica's state machine then stands at `applied` with `membership`. The group's log must be set to
/// match ([`crate::log_store::LogStore::restore_at`]).
pub fn restore(
    db: Arc<DB>,
    shard: u32,
    data: impl std::io::Read,
    applied: LogId,
    membership: StoredMembership,
    retention: Arc<Retention>,
    opts: EngineOptions,
) -> Result<(), pharos_storage::StorageError> {
    let mut engine = ShardEngine::import(db, shard, data, retention, opts)?;
    engine.set_mark(&encode_mark(&Some(applied), &membership));
    engine.checkpoint()
}

fn decode_mark(mark: &[u8]) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    if mark.is_empty() {
        return Ok((None, StoredMembership::default()));
    }
    bincode::deserialize(mark).map_err(|e| StorageIOError::read_state_machine(&e).into())
}

fn encode_mark(applied: &Option<LogId>, m: &StoredMembership) -> Vec<u8> {
    bincode::serialize(&(applied, m)).expect("log ids and memberships serialize")
}

/// The snapshot at an engine mark. The id names the position only, so the same state always has the same id.
fn meta_at(shard: u32, mark: &[u8]) -> Result<SnapshotMeta, StorageError> {
    let (applied, membership) = decode_mark(mark)?;
    Ok(SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id: format!("shard{shard}-{}", applied.map(|l| l.index).unwrap_or(0)),
    })
}

fn engine_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

impl ShardStateMachine {
    pub fn open(
        db: Arc<DB>,
        shard: u32,
        retention: Arc<Retention>,
        opts: EngineOptions,
        spool: Spool,
    ) -> Result<Self, pharos_storage::StorageError> {
        let interrupted_import = ShardEngine::recover_import(&db, shard)?;
        let engine = ShardEngine::open(db.clone(), shard, retention.clone(), opts.clone())?;
        let (applied, membership) = decode_mark(engine.durable_mark().unwrap_or_default()).map_err(|e| {
            pharos_storage::StorageError::Snapshot(format!("shard {shard}: unreadable applied mark: {e}"))
        })?;
        Ok(ShardStateMachine {
            engine: Arc::new(RwLock::new(engine)),
            db,
            shard,
            retention,
            opts,
            spool,
            interrupted_import,
            applied,
            membership,
            alive: tokio::sync::watch::Sender::new(()),
            current: Arc::new(Mutex::new(None)),
            prepared: Arc::new(Mutex::new(None)),
        })
    }

    /// A handle that exports this shard's snapshot ahead of need (see [`SnapshotPreparer`]).
    pub fn preparer(&self) -> SnapshotPreparer {
        SnapshotPreparer {
            db: self.db.clone(),
            engine: self.engine.clone(),
            shard: self.shard,
            spool: self.spool.clone(),
            slot: self.prepared.clone(),
        }
    }

    /// Whether this replica's data was emptied at open because an import of a snapshot had been cut off (a
    /// crash while installing one). Its Raft log must then be emptied too
    /// ([`crate::log_store::LogStore::reset`]): the state machine starts from nothing, and the log before
    /// the lost snapshot may already be purged, so the leader has to send a snapshot again.
    pub fn interrupted_import(&self) -> bool {
        self.interrupted_import
    }

    /// Resolves once this state machine is dropped, i.e. openraft's state machine task has ended. That
    /// task goes on with the applies already queued after `Raft::shutdown` returns: wait for this before
    /// deleting a replica's data, or an apply may write into (or read from) a range being deleted.
    pub fn gone(&self) -> Gone {
        Gone(self.alive.subscribe())
    }

    /// The engine, for readers (take the read lock for as short as possible).
    pub fn engine(&self) -> SharedEngine {
        self.engine.clone()
    }
}

impl RaftStateMachine<TypeConfig> for ShardStateMachine {
    type SnapshotBuilder = ShardSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut engine = self.engine.write().expect("engine lock poisoned");
        for e in entries {
            let log_id = *e.get_log_id();
            self.applied = Some(log_id);
            match e.payload {
                EntryPayload::Blank => {
                    engine.set_mark(&encode_mark(&self.applied, &self.membership));
                    out.push(Response::None);
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    engine.set_mark(&encode_mark(&self.applied, &self.membership));
                    out.push(Response::None);
                }
                EntryPayload::Normal(Request::Shard(cmd)) => {
                    let mark = encode_mark(&self.applied, &self.membership);
                    let res = engine.apply(&cmd, &mark).map_err(engine_err)?;
                    out.push(Response::Shard(res));
                }
                EntryPayload::Normal(Request::Meta(_)) => {
                    engine.set_mark(&encode_mark(&self.applied, &self.membership));
                    out.push(Response::None);
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        ShardSnapshotBuilder {
            engine: self.engine.clone(),
            shard: self.shard,
            spool: self.spool.clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let f = self.spool.file().map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(tokio::fs::File::from_std(f)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let sig = Some(meta.signature());
        let file = spool::received(*snapshot).await.map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?;
        let applied = meta.last_log_id;
        let membership = meta.last_membership.clone();
        // The snapshot's position is made durable with the data even if the exporter's mark differs in
        // membership detail.
        let mark = encode_mark(&applied, &membership);
        let (db, engine, shard) = (self.db.clone(), self.engine.clone(), self.shard);
        let (retention, opts) = (self.retention.clone(), self.opts.clone());
        // A large import is seconds of disk work: it runs off the async workers.
        tokio::task::spawn_blocking(move || -> Result<(), pharos_storage::StorageError> {
            let mut engine = engine.write().expect("engine lock poisoned");
            // The imported shard replaces this replica's, read from the file in bounded memory and written
            // aside before it is swapped in (a corrupt snapshot leaves the replica's data as it was).
            let data = BufReader::with_capacity(1 << 20, file);
            *engine = ShardEngine::import(db, shard, data, retention, opts)?;
            engine.set_mark(&mark);
            engine.checkpoint()
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e))?
        .map_err(|e| StorageIOError::write_snapshot(sig, &e))?;
        self.applied = applied;
        self.membership = membership;
        *self.current.lock().expect("snapshot lock") = Some(meta.clone());
        Ok(())
    }

    /// An export of the engine, for a replica that needs a snapshot: one prepared ahead
    /// ([`SnapshotPreparer`]) when it is recent and no older than the last snapshot built, else a fresh
    /// one; None until one was built or installed (openraft asks at startup and builds one where logs were
    /// purged).
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self.current.lock().expect("snapshot lock").clone();
        let Some(current) = current else { return Ok(None) };
        let prepared = self.prepared.lock().expect("prepared snapshot lock").take();
        if let Some(p) = prepared.filter(|p| p.at.elapsed() < PREPARED_FOR && p.meta.last_log_id >= current.last_log_id)
        {
            tracing::info!(shard = self.shard, snapshot = %p.meta.snapshot_id, "sending the snapshot exported ahead");
            *self.current.lock().expect("snapshot lock") = Some(p.meta.clone());
            return Ok(Some(Snapshot { meta: p.meta, snapshot: Box::new(tokio::fs::File::from_std(p.file)) }));
        }
        let (db, engine, shard, spool) = (self.db.clone(), self.engine.clone(), self.shard, self.spool.clone());
        // Seconds of disk work for a large shard: off the async workers.
        let (meta, file) = tokio::task::spawn_blocking(move || export_to_spool(&db, &engine, shard, &spool))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))??;
        *self.current.lock().expect("snapshot lock") = Some(meta.clone());
        Ok(Some(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) }))
    }
}

/// Writes an export of the shard to a spool file and returns it rewound, with the position it holds. The
/// checkpoint, the mark and a RocksDB snapshot are taken together under the write lock, so the mark matches
/// the data; the dump reads the snapshot after the lock is released, and applies and reads go on meanwhile.
fn export_to_spool(
    db: &DB,
    engine: &SharedEngine,
    shard: u32,
    spool: &Spool,
) -> Result<(SnapshotMeta, std::fs::File), StorageError> {
    let (snap, mark) = {
        let mut engine = engine.write().expect("engine lock poisoned");
        engine.checkpoint().map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        (db.snapshot(), engine.mark().to_vec())
    };
    let meta = meta_at(shard, &mark)?;
    let sig = || Some(meta.signature());
    let mut file = spool.file().map_err(|e| StorageIOError::read_snapshot(sig(), &e))?;
    let mut out = BufWriter::with_capacity(1 << 20, &mut file);
    let bytes = pharos_storage::engine::export_snapshot(db, shard, &snap, &mut out)
        .map_err(|e| StorageIOError::read_snapshot(sig(), &e))?;
    out.flush().map_err(|e| StorageIOError::read_snapshot(sig(), &e))?;
    drop(out);
    drop(snap);
    file.rewind().map_err(|e| StorageIOError::read_snapshot(sig(), &e))?;
    tracing::info!(shard, bytes, snapshot = %meta.snapshot_id, "snapshot exported for a replica");
    Ok((meta, file))
}

/// See [`ShardStateMachine::gone`].
#[derive(Clone)]
pub struct Gone(tokio::sync::watch::Receiver<()>);

impl Gone {
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

pub struct ShardSnapshotBuilder {
    engine: SharedEngine,
    shard: u32,
    spool: Spool,
    current: Arc<Mutex<Option<SnapshotMeta>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for ShardSnapshotBuilder {
    /// Makes the applied state durable (a synced checkpoint) so openraft may purge the log before it, and
    /// records the position. openraft keeps only the meta of a built snapshot (it sends what
    /// `get_current_snapshot` exports), so the data returned here is empty.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mark = {
            let mut engine = self.engine.write().expect("engine lock poisoned");
            engine.checkpoint().map_err(|e| StorageIOError::write_snapshot(None, &e))?;
            engine.mark().to_vec()
        };
        let meta = meta_at(self.shard, &mark)?;
        *self.current.lock().expect("snapshot lock") = Some(meta.clone());
        let empty = self.spool.file().map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(empty)) })
    }
}
