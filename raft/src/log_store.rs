//! The Raft log of every group of a node in one RocksDB instance.
//!
//! | CF           | key                       | value                          |
//! |--------------|---------------------------|--------------------------------|
//! | `raft_log`   | group(4) index(8)         | `Entry` in the wire format (`wire`: bincode, LZ4 when large) |
//! | `raft_state` | group(4) "vote"           | bincode of `Vote`              |
//! | `raft_state` | group(4) "committed"      | bincode of `Option<LogId>`     |
//! | `raft_state` | group(4) "purged"         | bincode of `LogId`             |
//!
//! Entries just appended are also kept decoded in a small per-group cache until the state machine applies them:
//! the apply path then neither decodes the entry again nor allocates a second copy of its points (a write
//! entry's batches are shared `Arc`s, so a cached entry costs a few pointers). Replication readers look there
//! first too; whatever the cache misses (a lagging follower, a restart) is read from RocksDB.
//!
//! The same [`LogCache`] keeps the encoded bytes of recent entries, so an entry is encoded once per node: the
//! leader's replication sends the bytes its own append wrote (see [`crate::network`]), and a follower appends
//! the bytes it received.
//!
//! Votes are written with a synced WAL; appends are written at once and acknowledged (their `LogFlushed`
//! completed) after a WAL sync, which a node-wide [`Syncer`] shares between all groups; `purged` is written before
//! the entries are deleted, so a crash between the two never shows a log with a hole at its start.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

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
    /// Shared by the store, its readers and the group's network.
    cache: LogCache,
    /// The store itself (which openraft reads from only to apply entries) takes entries out of the cache as it
    /// reads them; readers handed out by `get_log_reader` (replication) leave them in.
    take_on_read: bool,
}

/// Most entries, and most (approximate, decoded) bytes, one group's cache holds; beyond either the oldest
/// are dropped.
const CACHE_ENTRIES: usize = 64;
const CACHE_BYTES: usize = 16 << 20;

/// Most bytes of encoded entries kept for replication sends, and most received entries waiting for their
/// append, per group.
const ENCODED_BYTES: usize = 2 << 20;
const INCOMING_BYTES: usize = 16 << 20;

/// Recent entries of one group, decoded and encoded; shared by its log store, log readers and network.
#[derive(Clone, Default)]
pub struct LogCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Default)]
struct CacheInner {
    decoded: EntryCache,
    /// Encoded bytes of the entries this node appended, oldest first.
    encoded: VecDeque<(LogId, Arc<[u8]>)>,
    encoded_bytes: usize,
    /// Encoded bytes received from the leader, by index, until the append of that entry uses them.
    incoming: std::collections::BTreeMap<u64, (LogId, Arc<[u8]>)>,
    incoming_bytes: usize,
    /// The stored size of every entry appended since this process started and not purged, oldest first
    /// (entries from before a restart are not counted): what the log keeper purges by.
    sizes: VecDeque<(u64, u32)>,
    sizes_bytes: u64,
}

impl LogCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes this node's log holds for the entry `id`, if still at hand.
    pub fn encoded(&self, id: &LogId) -> Option<Arc<[u8]>> {
        let c = self.lock();
        // Newest entries are looked up most; the run is short.
        c.encoded.iter().rev().find(|(i, _)| i == id).map(|(_, b)| b.clone())
    }

    /// Bytes a follower received for entries it is about to append (each decodes to its entry exactly).
    pub fn offer_incoming(&self, entries: impl IntoIterator<Item = (LogId, Arc<[u8]>)>) {
        let mut c = self.lock();
        for (id, b) in entries {
            c.incoming_bytes += b.len();
            if let Some((_, old)) = c.incoming.insert(id.index, (id, b)) {
                c.incoming_bytes -= old.len();
            }
        }
        // Offers the log never took (it already had those entries, or refused the append) go oldest first.
        while c.incoming_bytes > INCOMING_BYTES {
            let Some((_, (_, old))) = c.incoming.pop_first() else { break };
            c.incoming_bytes -= old.len();
        }
    }

    pub(crate) fn take_incoming(&self, id: &LogId) -> Option<Arc<[u8]>> {
        let mut c = self.lock();
        let (i, b) = c.incoming.remove(&id.index)?;
        c.incoming_bytes -= b.len();
        (i == *id).then_some(b)
    }

    /// Drops offers at or below `index`: appended, or no longer wanted.
    fn drop_incoming_to(c: &mut CacheInner, index: u64) {
        while c.incoming.first_key_value().is_some_and(|(&i, _)| i <= index) {
            let (_, (_, old)) = c.incoming.pop_first().expect("non-empty");
            c.incoming_bytes -= old.len();
        }
    }

    fn appended(&self, fresh: Vec<(Entry, Arc<[u8]>)>) {
        let mut c = self.lock();
        if let Some((e, _)) = fresh.last() {
            Self::drop_incoming_to(&mut c, e.get_log_id().index);
        }
        for (e, b) in fresh {
            let id = *e.get_log_id();
            c.sizes.push_back((id.index, b.len() as u32));
            c.sizes_bytes += b.len() as u64;
            let weight = decoded_weight(&e).max(b.len());
            c.decoded.push(e, weight);
            c.encoded_bytes += b.len();
            c.encoded.push_back((id, b));
            while c.encoded_bytes > ENCODED_BYTES && c.encoded.len() > 1 {
                let (_, old) = c.encoded.pop_front().expect("non-empty");
                c.encoded_bytes -= old.len();
            }
        }
    }

    /// Forgets entries at `index` and after (a truncated log).
    fn truncate_from(&self, index: u64) {
        let mut c = self.lock();
        c.decoded.truncate_from(index);
        c.incoming.clear();
        c.incoming_bytes = 0;
        while c.encoded.back().is_some_and(|(id, _)| id.index >= index) {
            let (_, b) = c.encoded.pop_back().expect("non-empty");
            c.encoded_bytes -= b.len();
        }
        while c.sizes.back().is_some_and(|(i, _)| *i >= index) {
            let (_, n) = c.sizes.pop_back().expect("non-empty");
            c.sizes_bytes -= n as u64;
        }
    }

    /// Forgets entries up to and including `index` (a purged log).
    fn purge_to(&self, index: u64) {
        let mut c = self.lock();
        c.decoded.purge_to(index);
        Self::drop_incoming_to(&mut c, index);
        while c.encoded.front().is_some_and(|(id, _)| id.index <= index) {
            let (_, b) = c.encoded.pop_front().expect("non-empty");
            c.encoded_bytes -= b.len();
        }
        while c.sizes.front().is_some_and(|(i, _)| *i <= index) {
            let (_, n) = c.sizes.pop_front().expect("non-empty");
            c.sizes_bytes -= n as u64;
        }
    }

    /// Stored bytes of the entries after `index` (those appended since this process started).
    pub fn bytes_after(&self, index: u64) -> u64 {
        let c = self.lock();
        let before: u64 = c.sizes.iter().take_while(|(i, _)| *i <= index).map(|(_, n)| *n as u64).sum();
        c.sizes_bytes - before
    }

    /// The highest index up to which the log can be purged so that at most `keep` bytes of entries follow it
    /// (None when everything counted fits).
    pub fn purge_point(&self, keep: u64) -> Option<u64> {
        let c = self.lock();
        let mut after = c.sizes_bytes;
        let mut point = None;
        for (i, n) in &c.sizes {
            if after <= keep {
                break;
            }
            after -= *n as u64;
            point = Some(*i);
        }
        point
    }

    fn clear(&self) {
        *self.lock() = CacheInner::default();
    }
}

/// About the memory an entry takes decoded: a write's points with their vectors (names and tag values up to
/// 23 bytes live inline), so the cache's byte budget bounds memory, not the compressed size.
fn decoded_weight(e: &Entry) -> usize {
    use openraft::EntryPayload;
    use pharos_storage::{Command, Point};
    match &e.payload {
        EntryPayload::Normal(crate::types::Request::Shard(Command::Write(batches))) => batches
            .iter()
            .flat_map(|b| b.iter())
            .map(|p| std::mem::size_of::<Point>() + p.tags.len() * 48 + p.fields.len() * 32)
            .sum(),
        _ => 0,
    }
}

/// Consecutive recently appended entries, decoded, with their approximate decoded sizes.
#[derive(Default)]
struct EntryCache {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.get_log_id().index)
    }

    fn pos(&self, index: u64) -> Option<usize> {
        let first = self.first_index()?;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        (pos < self.entries.len()).then_some(pos)
    }

    fn push(&mut self, e: Entry, size: usize) {
        let index = e.get_log_id().index;
        // Only a run of consecutive indexes is kept; an append that does not follow restarts it.
        let next = self.first_index().map(|f| f + self.entries.len() as u64);
        if next != Some(index) {
            self.truncate_from(index);
            if self.first_index().map(|f| f + self.entries.len() as u64) != Some(index) {
                self.clear();
            }
        }
        self.entries.push_back((e, size));
        self.bytes += size;
        while self.entries.len() > CACHE_ENTRIES || (self.bytes > CACHE_BYTES && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let (e, size) = self.entries.pop_front()?;
        self.bytes -= size;
        Some(e)
    }

    /// Drops entries at `index` and after.
    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(e, _)| e.get_log_id().index >= index) {
            let (_, size) = self.entries.pop_back().expect("non-empty");
            self.bytes -= size;
        }
    }

    /// Drops entries up to and including `index`.
    fn purge_to(&mut self, index: u64) {
        while self.first_index().is_some_and(|f| f <= index) {
            self.pop_front();
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
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
        LogStore { db, group, syncer: None, cache: LogCache::default(), take_on_read: true }
    }

    /// A log store whose appends are made durable by a node-wide [`Syncer`].
    pub fn with_syncer(db: Arc<DB>, group: GroupId, syncer: Syncer) -> LogStore {
        LogStore { db, group, syncer: Some(syncer), cache: LogCache::default(), take_on_read: true }
    }

    /// The group's cache, for its network (see [`LogCache`]).
    pub fn cache(&self) -> LogCache {
        self.cache.clone()
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

    /// Entries from `start` up to `end` (exclusive), read from RocksDB.
    fn read_db(&self, start: u64, end: Option<u64>, out: &mut Vec<Entry>) -> Result<(), StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(match end {
            Some(e) => log_key(self.group, e).to_vec(),
            None => (self.group + 1).to_be_bytes().to_vec(),
        });
        let from = log_key(self.group, start);
        let it = self.db.iterator_cf_opt(cf(&self.db, CF_RAFT_LOG), ro, IteratorMode::From(&from, Direction::Forward));
        for item in it {
            let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(crate::wire::decode::<Entry>(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(())
    }

    /// Empties the group's log but keeps its vote (a replica whose state machine lost an interrupted
    /// snapshot import starts again from nothing; the vote it cast must stand, so it cannot vote twice in a
    /// term). Every entry it held is committed and in the leader's snapshot, which the leader sends again.
    pub fn reset(&self) -> Result<(), rocksdb::Error> {
        self.cache.clear();
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, 0), log_key(self.group + 1, 0));
        b.delete_cf(cf(&self.db, CF_RAFT_STATE), state_key(self.group, "purged"));
        self.db.write_opt(b, &synced())
    }

    /// Sets the group's log to the state a restored replica starts from (`pharos restore`): nothing in it,
    /// everything up to `last` purged and committed (the restored state machine holds it), and `vote`
    /// cast, which must be at least `last`'s term so the group's next leader writes after it. Whatever the
    /// group held before is deleted.
    pub fn restore_at(&self, last: LogId, vote: Vote) -> Result<(), rocksdb::Error> {
        self.destroy()?;
        let ser = "log ids and votes serialize";
        let mut b = WriteBatch::default();
        let state = cf(&self.db, CF_RAFT_STATE);
        b.put_cf(state, state_key(self.group, "purged"), bincode::serialize(&last).expect(ser));
        b.put_cf(state, state_key(self.group, "committed"), bincode::serialize(&Some(last)).expect(ser));
        b.put_cf(state, state_key(self.group, "vote"), bincode::serialize(&vote).expect(ser));
        self.db.write_opt(b, &synced())
    }

    /// Deletes every trace of this group (its replica moved away).
    pub fn destroy(&self) -> Result<(), rocksdb::Error> {
        self.cache.clear();
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, 0), log_key(self.group + 1, 0));
        b.delete_range_cf(cf(&self.db, CF_RAFT_STATE), self.group.to_be_bytes(), (self.group + 1).to_be_bytes());
        self.db.write_opt(b, &synced())
    }
}

/// Compacts a group's log up to and including `upto` (purged): RocksDB drops the files and records the
/// purge's range deletion covers, which it otherwise keeps until its own compactions reach them.
pub fn compact_purged(db: &DB, group: GroupId, upto: u64) {
    let (lo, hi) = (log_key(group, 0), log_key(group, upto.saturating_add(1)));
    db.compact_range_cf_opt(
        cf(db, CF_RAFT_LOG),
        Some(&lo[..]),
        Some(&hi[..]),
        &pharos_storage::db::shared_compaction(),
    );
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
        let mut out = Vec::new();
        // A bounded range that starts inside the cache is served from it as far as it reaches.
        if let Some(end) = end.filter(|&e| e > start) {
            let mut inner = self.cache.lock();
            let cache = &mut inner.decoded;
            if let Some(pos) = cache.pos(start) {
                let take = (end - start).min((cache.entries.len() - pos) as u64) as usize;
                out.extend(cache.entries.range(pos..pos + take).map(|(e, _)| e.clone()));
                if self.take_on_read {
                    // Applied entries are not read by the store again; drop them and anything older.
                    cache.purge_to(start + take as u64 - 1);
                }
            }
        }
        let next = start + out.len() as u64;
        if end.is_none_or(|e| next < e) {
            self.read_db(next, end, &mut out)?;
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
        LogStore { take_on_read: false, ..self.clone() }
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
        let mut fresh = Vec::new();
        for e in entries {
            let v: Arc<[u8]> = match self.cache.take_incoming(e.get_log_id()) {
                Some(v) => v,
                None => crate::wire::encode_entry(&e).map_err(|err| StorageIOError::write_logs(&err))?.into(),
            };
            b.put_cf(log, log_key(self.group, e.get_log_id().index), &v);
            fresh.push((e, v));
        }
        // Cached before the write so a reader never finds the cache behind RocksDB. A failed write stops the
        // group's Raft core for good, so nothing reads the cache after that.
        self.cache.appended(fresh);
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
        self.cache.truncate_from(log_id.index);
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, log_id.index), log_key(self.group + 1, 0));
        self.db.write_opt(b, &synced()).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_state("purged", &log_id)?;
        self.cache.purge_to(log_id.index);
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf(&self.db, CF_RAFT_LOG), log_key(self.group, 0), log_key(self.group, log_id.index + 1));
        self.db.write(b).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    fn indexes(c: &EntryCache) -> Vec<u64> {
        c.entries.iter().map(|(e, _)| e.log_id.index).collect()
    }

    #[test]
    fn sizes_follow_appends_truncations_and_purges() {
        let c = LogCache::default();
        let sized = |i: u64, n: usize| (entry(i), Arc::<[u8]>::from(vec![0u8; n]));
        c.appended((1..=4).map(|i| sized(i, 100 * i as usize)).collect());
        assert_eq!((c.bytes_after(0), c.bytes_after(2), c.bytes_after(4)), (1000, 700, 0));
        // Keep at most 750 bytes: 3 and 4 (700) stay, so up to 2 goes; everything fits 1000.
        assert_eq!((c.purge_point(750), c.purge_point(1000), c.purge_point(0)), (Some(2), None, Some(4)));
        c.truncate_from(4);
        assert_eq!((c.bytes_after(0), c.purge_point(300), c.purge_point(250)), (600, Some(2), Some(3)));
        c.purge_to(2);
        assert_eq!((c.bytes_after(0), c.bytes_after(3), c.purge_point(0)), (300, 0, Some(3)));
    }

    #[test]
    fn cache_keeps_one_run_of_consecutive_entries() {
        let mut c = EntryCache::default();
        for i in 5..9 {
            c.push(entry(i), 10);
        }
        assert_eq!(indexes(&c), [5, 6, 7, 8]);
        assert_eq!((c.pos(4), c.pos(5), c.pos(8), c.pos(9)), (None, Some(0), Some(3), None));
        // A conflicting append at 7 replaces 7 and 8.
        c.push(entry(7), 10);
        assert_eq!((indexes(&c), c.bytes), (vec![5, 6, 7], 30));
        // A gap restarts the run.
        c.push(entry(20), 10);
        assert_eq!((indexes(&c), c.bytes), (vec![20], 10));
        c.push(entry(21), 10);
        c.purge_to(20);
        assert_eq!(indexes(&c), [21]);
        c.truncate_from(21);
        assert_eq!((indexes(&c), c.bytes), (vec![], 0));
    }

    #[test]
    fn offered_bytes_serve_one_matching_append_and_do_not_pile_up() {
        let c = LogCache::default();
        let bytes = |n: usize| -> Arc<[u8]> { vec![7u8; n].into() };
        c.offer_incoming((1..=3).map(|i| (entry(i).log_id, bytes(10))));
        // Another term at the same index is a different entry: not served, and the stale offer is gone.
        let other = LogId::new(CommittedLeaderId::new(2, 1), 1);
        assert!(c.take_incoming(&other).is_none());
        assert!(c.take_incoming(&entry(1).log_id).is_none());
        // Appending up to 2 drops the offers it covers; 3 is still there, once.
        c.appended(vec![(entry(2), bytes(10))]);
        assert!(c.take_incoming(&entry(2).log_id).is_none());
        assert_eq!(c.take_incoming(&entry(3).log_id).map(|b| b.len()), Some(10));
        assert!(c.take_incoming(&entry(3).log_id).is_none());
        // Offers never taken are bounded by bytes, oldest dropped first.
        c.offer_incoming((10..14).map(|i| (entry(i).log_id, bytes(INCOMING_BYTES / 3))));
        assert!(c.take_incoming(&entry(10).log_id).is_none());
        assert!(c.take_incoming(&entry(13).log_id).is_some());
        assert!(c.lock().incoming_bytes <= INCOMING_BYTES);
    }

    #[test]
    fn cache_is_bounded_by_entries_and_bytes() {
        let mut c = EntryCache::default();
        for i in 0..(CACHE_ENTRIES as u64 + 10) {
            c.push(entry(i), 1);
        }
        assert_eq!(c.entries.len(), CACHE_ENTRIES);
        assert_eq!(c.first_index(), Some(10));
        c.push(entry(CACHE_ENTRIES as u64 + 10), CACHE_BYTES);
        // Over the byte budget: everything older goes, the newest stays even when it alone is too large.
        assert_eq!(indexes(&c), [CACHE_ENTRIES as u64 + 10]);
        assert_eq!(c.bytes, CACHE_BYTES);
    }
}
