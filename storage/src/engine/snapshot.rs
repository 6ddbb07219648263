//! A shard's data as a byte stream, for a new or lagging replica: written from a RocksDB snapshot to any
//! [`Write`] (a file, for Raft), and read back from any [`Read`], both in bounded memory.
//!
//! Layout ([`crate::formats::SNAPSHOT_FORMAT_WRITTEN`], 1): repeated `cf_index(1) key_len(4, BE) key value_len(4, BE) value`, column
//! families in [`ENGINE_CFS`] order, keys ascending within each.
//!
//! An import replaces the shard's data in two phases (a shard may hold gigabytes). First its records are
//! read, checked and written *aside*, into SST files next to the database, without touching it: a
//! truncated or corrupt snapshot, or a disk that fails or fills up, ends the import there with the old data
//! in place. Then they are swapped in: one synced write deletes the old data and sets an *import marker*,
//! RocksDB ingests the files (moved, not copied), and a last synced write removes the marker. So that a
//! crash inside the swap never leaves a mix of old and new data looking valid, a shard found with the
//! marker ([`ShardEngine::recover_import`]) holds no usable data: it is emptied, and its replica must be
//! given a snapshot again. The cost of the write-aside is disk: the old and the new data coexist until the
//! swap.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rocksdb::{
    Direction, IngestExternalFileOptions, IteratorMode, ReadOptions, SstFileWriter, WriteBatch, WriteOptions, DB,
};

use super::ShardEngine;
use crate::db::{cf, CF_META, ENGINE_CFS};
use crate::error::{Result, StorageError};
use crate::keys::{self, meta_key, ShardId};
use crate::retention::Retention;
use crate::EngineOptions;

/// Set while an import is under way (see the module docs).
const META_IMPORTING: &str = "importing";

/// How large an import lets each SST file it writes grow.
const IMPORT_FILE_BYTES: u64 = 256 << 20;

/// Writes a shard's data as a RocksDB snapshot of its database holds it. Taking the snapshot right after a
/// checkpoint, under the engine's lock, and writing it out after the lock is released lets applies and
/// reads go on while a large shard is dumped. Returns the bytes written.
pub fn export_snapshot(db: &DB, shard: ShardId, snap: &rocksdb::Snapshot<'_>, out: &mut impl Write) -> Result<u64> {
    let (lo, hi) = (keys::shard_prefix(shard).to_vec(), keys::shard_end(shard));
    let mut n = 0u64;
    for (i, name) in ENGINE_CFS.iter().enumerate() {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(hi.clone());
        ro.set_snapshot(snap);
        // A one-off scan of the whole shard: keep it out of the block cache.
        ro.fill_cache(false);
        let it = db.iterator_cf_opt(cf(db, name), ro, IteratorMode::From(&lo, Direction::Forward));
        for item in it {
            let (k, v) = item?;
            let io = |e: std::io::Error| StorageError::Snapshot(format!("writing the snapshot: {e}"));
            out.write_all(&[i as u8]).map_err(io)?;
            out.write_all(&(k.len() as u32).to_be_bytes()).map_err(io)?;
            out.write_all(&k).map_err(io)?;
            out.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
            out.write_all(&v).map_err(io)?;
            n += 9 + k.len() as u64 + v.len() as u64;
        }
    }
    out.flush().map_err(|e| StorageError::Snapshot(format!("writing the snapshot: {e}")))?;
    Ok(n)
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` at a clean end of the stream (nothing read).
fn read_record_start(r: &mut impl Read, buf: &mut [u8; 1]) -> Result<bool> {
    loop {
        return match r.read(buf) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => Err(StorageError::Snapshot(format!("reading the snapshot: {e}"))),
        };
    }
}

fn read_bytes(r: &mut impl Read, what: &str, out: &mut Vec<u8>) -> Result<()> {
    let bad = |e: std::io::Error| match e.kind() {
        ErrorKind::UnexpectedEof => StorageError::Snapshot(format!("truncated or corrupt snapshot ({what})")),
        _ => StorageError::Snapshot(format!("reading the snapshot: {e}")),
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(bad)?;
    let n = u32::from_be_bytes(len) as usize;
    out.clear();
    // Grown as bytes arrive, so a corrupt length cannot make us allocate 4 GB up front.
    let got = r.by_ref().take(n as u64).read_to_end(out).map_err(bad)?;
    if got != n {
        return Err(StorageError::Snapshot(format!("truncated or corrupt snapshot ({what})")));
    }
    Ok(())
}

impl ShardEngine {
    /// Serializes the whole shard (after a checkpoint, so heads are included) into memory. For tests and
    /// tools; replicas stream snapshots with [`export_snapshot`].
    pub fn export(&mut self) -> Result<Vec<u8>> {
        self.checkpoint()?;
        let snap = self.db.snapshot();
        let mut out = Vec::new();
        export_snapshot(&self.db, self.shard, &snap, &mut out)?;
        Ok(out)
    }

    /// Replaces the shard's data with an exported snapshot, read as a stream, and reopens the engine on it.
    /// A snapshot that is corrupt, truncated or of another shard, or a disk that fails while it is written
    /// aside, leaves the shard's data as it was and returns the error (see the module docs).
    ///
    /// The records are written into SST files (the snapshot holds each column family's keys in order) that
    /// RocksDB then takes in whole (`IngestExternalFile`, moved, not copied): no write-ahead log, no
    /// memtables, no flushes, so a replica's import costs about one write of its bytes, not three.
    pub fn import(
        db: Arc<DB>,
        shard: ShardId,
        data: impl Read,
        retention: Arc<Retention>,
        opts: EngineOptions,
    ) -> Result<ShardEngine> {
        Self::import_files(&db, shard, data, IMPORT_FILE_BYTES)?;
        ShardEngine::open(db, shard, retention, opts)
    }

    /// The import proper, writing SST files of at most about `file_bytes` each (tests use small ones), without
    /// reopening the engine: the files are written aside first, then swapped in.
    pub fn import_files(db: &DB, shard: ShardId, data: impl Read, file_bytes: u64) -> Result<()> {
        // Next to the database directory, on its filesystem, so ingestion moves the files.
        let dir = db.path().with_file_name(format!("import-{shard}"));
        let _ = std::fs::remove_dir_all(&dir);
        let io = |e: std::io::Error| StorageError::Snapshot(format!("import directory {}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let result = Self::write_aside(shard, data, &dir, file_bytes).and_then(|files| Self::swap_in(db, shard, files));
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// Writes the snapshot's records into SST files in `dir`, checking each (a known column family, this
    /// shard's keys, ascending), without touching the database: any error here leaves the shard as it was.
    /// Returns each column family's files.
    fn write_aside(
        shard: ShardId,
        mut data: impl Read,
        dir: &std::path::Path,
        file_bytes: u64,
    ) -> Result<Vec<Vec<std::path::PathBuf>>> {
        let prefix = keys::shard_prefix(shard);
        let marker = meta_key(shard, META_IMPORTING);
        let options: Vec<rocksdb::Options> = ENGINE_CFS.iter().map(|n| crate::db::sst_writer_options(n)).collect();
        let mut writers: Vec<Option<SstFileWriter<'_>>> = options.iter().map(|_| None).collect();
        let mut files: Vec<Vec<std::path::PathBuf>> = vec![Vec::new(); ENGINE_CFS.len()];
        // Each column family's keys ascend across all its files (a file only checks its own).
        let mut last: Vec<Option<Vec<u8>>> = vec![None; ENGINE_CFS.len()];
        let (mut first, mut k, mut v) = ([0u8; 1], Vec::new(), Vec::new());
        while read_record_start(&mut data, &mut first)? {
            let i = first[0] as usize;
            let name = *ENGINE_CFS
                .get(i)
                .ok_or_else(|| StorageError::Snapshot("truncated or corrupt snapshot (column family)".into()))?;
            read_bytes(&mut data, "key", &mut k)?;
            read_bytes(&mut data, "value", &mut v)?;
            if !k.starts_with(&prefix) {
                return Err(StorageError::Snapshot("snapshot holds keys of another shard".into()));
            }
            if name == CF_META && k == marker {
                continue;
            }
            if last[i].as_ref().is_some_and(|prev| *prev >= k) {
                return Err(StorageError::Snapshot("corrupt snapshot (keys out of order)".into()));
            }
            last[i] = Some(k.clone());
            if writers[i].as_ref().is_some_and(|w| w.file_size() >= file_bytes) {
                if let Some(mut w) = writers[i].take() {
                    w.finish()?;
                }
            }
            let w = match &mut writers[i] {
                Some(w) => w,
                slot => {
                    let path = dir.join(format!("{i}-{}.sst", files[i].len()));
                    let w = SstFileWriter::create(&options[i]);
                    w.open(&path)?;
                    files[i].push(path);
                    slot.insert(w)
                }
            };
            w.put(&k, &v)?;
        }
        for w in writers.iter_mut().filter_map(Option::take) {
            let mut w = w;
            w.finish()?;
        }
        Ok(files)
    }

    /// Swaps files written aside in for the shard's data: the old data is deleted and the marker set in one
    /// synced write, the files are ingested, and the marker is removed, synced. A crash in between leaves the
    /// marker ([`ShardEngine::recover_import`]).
    fn swap_in(db: &DB, shard: ShardId, files: Vec<Vec<std::path::PathBuf>>) -> Result<()> {
        let marker = Self::begin_swap(db, shard)?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        for (name, files) in ENGINE_CFS.iter().zip(files) {
            if !files.is_empty() {
                db.ingest_external_file_cf_opts(cf(db, name), &ingest, files)?;
            }
        }
        let mut b = WriteBatch::default();
        b.delete_cf(cf(db, CF_META), &marker);
        db.write_opt(b, &synced())?;
        Ok(())
    }

    /// The swap's first step, alone: the shard's data deleted and the import marker set (synced). Public
    /// for tests, where it stands for a crash in the middle of a swap.
    #[doc(hidden)]
    pub fn begin_swap(db: &DB, shard: ShardId) -> Result<Vec<u8>> {
        let marker = meta_key(shard, META_IMPORTING);
        let mut batch = Self::drop_batch(db, shard);
        batch.put_cf(cf(db, CF_META), &marker, b"1");
        db.write_opt(batch, &synced())?;
        Ok(marker)
    }

    /// Whether an import of this shard was cut off (by a crash or an error); if so its partial data is
    /// deleted, so the shard opens empty. The caller must then treat the replica as holding nothing.
    pub fn recover_import(db: &DB, shard: ShardId) -> Result<bool> {
        if !Self::import_marked(db, shard)? {
            return Ok(false);
        }
        tracing::warn!(shard, "an import of this shard's snapshot was cut off; its partial data is deleted");
        db.write_opt(Self::drop_batch(db, shard), &synced())?;
        Ok(true)
    }

    /// Deletes every record of a shard (a replica moved away, or before an import).
    pub fn drop_data(db: &DB, shard: ShardId) -> Result<()> {
        db.write(Self::drop_batch(db, shard))?;
        Ok(())
    }

    fn drop_batch(db: &DB, shard: ShardId) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for name in ENGINE_CFS {
            batch.delete_range_cf(cf(db, name), keys::shard_prefix(shard).to_vec(), keys::shard_end(shard));
        }
        batch
    }

    /// Whether the shard carries an import marker (it then refuses to open).
    pub(super) fn import_marked(db: &DB, shard: ShardId) -> Result<bool> {
        Ok(db.get_cf(cf(db, CF_META), meta_key(shard, META_IMPORTING))?.is_some())
    }
}
