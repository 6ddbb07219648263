//! The Raft log of every group of a node in one RocksDB instance.
//!
//! | CF           | key                       | value                          |
//! |--------------|---------------------------|--------------------------------|
//! | `raft_log`   | group(4) index(8)         | `Entry` in the wire format (`wire`: bincode, LZ4 when large) |
//! | `raft_state` | group(4) "vote"           | bincode of `Vote`              |
//! | `raft_state` | group(4) "committed"      | bincode of `Option<LogId>`     |
//! | `raft_state` | group(4) "purged"         | bincode of `LogId`             |
//!
//! Votes are written with a synced WAL; appends are written at once and acknowledged (their `LogFlushed`
//! completed) after a WAL sync, which a node-wide [`Syncer`] shares between all groups; `purged` is written before
//! the entries are deleted, so a crash between the two never shows a log with a hole at its start.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{RaftLogId, StorageIOError};
use pharos_storage::db::{cf, CF_RAFT_LOG, CF_RAFT_STATE};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};

use crate::syncer::Syncer;
use crate::types::{Entry, GroupId, LogId, StorageError, TypeConfig, Vote};

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    group: GroupId,
    /// Batches the fsyncs of appends across groups; without one, each append syncs by itself.
    syncer: Option<Syncer>,
}

fn log_key(group: GroupId, index: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&group.to_be_bytes());
    k[4..].copy_from_slice(&index.to_be_bytes());
    k
}

fn state_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut k = group.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl LogStore {
    pub fn new(db: Arc<DB>, group: GroupId) -> LogStore {
        LogStore { db, group, syncer: None }
    }

    /// A log store whose appends are made durable by a node-wide [`Syncer`].
    pub fn with_syncer(db: Arc<DB>, group: GroupId, syncer: Syncer) -> LogStore {
        LogStore { db, group, syncer: Some(syncer) }
    }

    fn get_state<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StorageError> {
        let v = self
            .db
            .get_cf(cf(&self.db, CF_RAFT_STATE), state_key(self.group, name))
            .map_err(|e| StorageIOError::read(&e))?;
        match v {
            None => Ok(None),
            Some(b) => bincode::deserialize(&b).map(Some).map_err(|e| StorageIOError::read(&e).into()),
        }
    }

    fn put_state<T: serde::Serialize>(&self, name: &str, v: &T) -> Result<(), StorageError> {
        let b = bincode::serialize(v).map_err(|e| StorageIOError::write(&e))?;
        self.db
            .put_cf_opt(cf(&self.db, CF_RAFT_STATE), state_key(self.group, name), b, &synced())
            .map_err(|e| StorageIOError::write(&e).into())
    }

    /// Deletes every trace of this group (its replica moved away).
    pub fn destroy(&self) -> Result<(), rocksdb::Error> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, 0), log_key(self.group + 1, 0));
        b.delete_range_cf(cf(&self.db, CF_RAFT_STATE), self.group.to_be_bytes(), (self.group + 1).to_be_bytes());
        self.db.write_opt(b, &synced())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i.saturating_add(1)),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(match end {
            Some(e) => log_key(self.group, e).to_vec(),
            None => (self.group + 1).to_be_bytes().to_vec(),
        });
        let from = log_key(self.group, start);
        let it = self.db.iterator_cf_opt(cf(&self.db, CF_RAFT_LOG), ro, IteratorMode::From(&from, Direction::Forward));
        let mut out = Vec::new();
        for item in it {
            let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(crate::wire::decode::<Entry>(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self.get_state("purged")?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(log_key(self.group, 0).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf(&self.db, CF_RAFT_LOG), ro);
        it.seek_for_prev(log_key(self.group, u64::MAX));
        let last = if it.valid() {
            let v = it.value().unwrap_or_default();
            Some(*crate::wire::decode::<Entry>(v).map_err(|e| StorageIOError::read_logs(&e))?.get_log_id())
        } else {
            it.status().map_err(|e| StorageIOError::read_logs(&e))?;
            None
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_state("vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_state("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-learning the commit index from the leader.
        let b = bincode::serialize(&committed).map_err(|e| StorageIOError::write(&e))?;
        self.db
            .put_cf(cf(&self.db, CF_RAFT_STATE), state_key(self.group, "committed"), b)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_state::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut b = WriteBatch::default();
        let log = cf(&self.db, CF_RAFT_LOG);
        for e in entries {
            let v = crate::wire::encode(&e).map_err(|err| StorageIOError::write_logs(&err))?;
            b.put_cf(log, log_key(self.group, e.get_log_id().index), v);
        }
        match &self.syncer {
            Some(s) => {
                // Readable now; durable when the syncer's next fsync completes the callback.
                self.db.write(b).map_err(|e| StorageIOError::write_logs(&e))?;
                s.sync(callback);
                Ok(())
            }
            None => {
                let res = self.db.write_opt(b, &synced());
                let io = res.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string()));
                callback.log_io_completed(io);
                res.map_err(|e| StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, log_id.index), log_key(self.group + 1, 0));
        self.db.write_opt(b, &synced()).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_state("purged", &log_id)?;
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, 0), log_key(self.group, log_id.index + 1));
        self.db.write(b).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
