//! The one RocksDB instance of a node, shared by every shard replica and Raft group on it.
//!
//! A column family per concern; the Raft crate owns `raft_log` and `raft_state`, the engine the rest.
//! Chunk data is already compressed by the codec, so its column family uses LZ4 on upper levels only for
//! the keys and headers, and ZSTD at the bottom level where data settles.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options, DB};

use crate::error::Result;

pub const CF_SERIES: &str = "series";
pub const CF_CHUNKS: &str = "chunks";
pub const CF_HEADS: &str = "heads";
pub const CF_ROLLUP_1M: &str = "rollup_1m";
pub const CF_ROLLUP_1H: &str = "rollup_1h";
pub const CF_META: &str = "meta";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";

/// The engine's column families holding a shard's data (exported in snapshots, dropped with the shard).
pub const ENGINE_CFS: [&str; 6] = [CF_SERIES, CF_CHUNKS, CF_HEADS, CF_ROLLUP_1M, CF_ROLLUP_1H, CF_META];
pub const ALL_CFS: [&str; 8] =
    [CF_SERIES, CF_CHUNKS, CF_HEADS, CF_ROLLUP_1M, CF_ROLLUP_1H, CF_META, CF_RAFT_LOG, CF_RAFT_STATE];

#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Shared block cache for all column families.
    pub block_cache_bytes: usize,
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
    /// Background flush/compaction threads.
    pub background_jobs: i32,
    /// Bound of the write-ahead logs' total size (RocksDB's `max_total_wal_size`); see [`open`].
    pub wal_bytes: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions { block_cache_bytes: 256 << 20, write_buffer_bytes: 64 << 20, background_jobs: 2, wal_bytes: 4 << 20 }
    }
}

fn cf_options(name: &str, o: &DbOptions, cache: &Cache) -> Options {
    let mut opts = Options::default();
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    match name {
        CF_CHUNKS | CF_ROLLUP_1M | CF_ROLLUP_1H => {
            // Big blocks compress the repeated key prefixes and chunk headers well.
            table.set_block_size(32 << 10);
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_bottommost_compression_type(DBCompressionType::Zstd);
            opts.set_write_buffer_size(o.write_buffer_bytes);
        }
        CF_RAFT_LOG => {
            // Written once, read by followers catching up, purged soon: no compression, small memtables.
            opts.set_compression_type(DBCompressionType::None);
            opts.set_write_buffer_size(o.write_buffer_bytes);
        }
        _ => {
            opts.set_compression_type(DBCompressionType::Lz4);
            opts.set_bottommost_compression_type(DBCompressionType::Zstd);
            opts.set_write_buffer_size(o.write_buffer_bytes / 4);
        }
    }
    opts.set_block_based_table_factory(&table);
    opts
}

/// Options for writing SST files of a column family outside the database, to ingest (the table format and
/// compression the column family uses).
pub fn sst_writer_options(name: &str) -> Options {
    cf_options(name, &DbOptions::default(), &Cache::new_lru_cache(1 << 20))
}

/// Opens (creating if needed) the node's database with every column family.
pub fn open(path: &Path, o: &DbOptions) -> Result<Arc<DB>> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(o.background_jobs);
    db_opts.set_bytes_per_sync(1 << 20);
    // Fixed costs a small node should not pay: RocksDB preallocates 4 MB for its MANIFEST (rolled over only
    // at 1 GB by default) and keeps its info LOG growing.
    db_opts.set_manifest_preallocation_size(256 << 10);
    db_opts.set_max_manifest_file_size(64 << 20);
    db_opts.set_max_log_file_size(512 << 10);
    db_opts.set_keep_log_file_num(2);
    // The write-ahead logs' bound: past it RocksDB flushes the column families that keep the oldest log
    // alive (without one it keeps up to four times every memtable's size, GBs, for column families written
    // rarely), and it preallocates each new log by at most that much (else 1.1 x a memtable: 70 MB, for good
    // on an idle node). RocksDB's C API cannot change it while the database is open.
    db_opts.set_max_total_wal_size(o.wal_bytes);
    let cache = Cache::new_lru_cache(o.block_cache_bytes);
    let cfs = ALL_CFS.iter().map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, o, &cache)));
    Ok(Arc::new(DB::open_cf_descriptors(&db_opts, path, cfs)?))
}

/// Compacts one shard's keys of an engine column family (every key starts with the shard's prefix).
pub fn compact_shard(db: &DB, name: &'static str, shard: crate::keys::ShardId) {
    let (lo, hi) = (crate::keys::shard_prefix(shard), crate::keys::shard_end(shard));
    db.compact_range_cf_opt(cf(db, name), Some(&lo[..]), Some(&hi[..]), &shared_compaction());
}

/// Options for a manual compaction that runs beside RocksDB's own (the default holds them all back).
pub fn shared_compaction() -> rocksdb::CompactOptions {
    let mut o = rocksdb::CompactOptions::default();
    o.set_exclusive_manual_compaction(false);
    o
}

/// Flushes every column family's memtable, so no write-ahead log is needed any more and RocksDB deletes
/// them (an idle node keeps none).
pub fn flush_all(db: &DB) -> Result<()> {
    for name in ALL_CFS {
        db.flush_cf(cf(db, name))?;
    }
    Ok(())
}

/// Bytes in the memtables of every column family.
pub fn memtable_bytes(db: &DB) -> u64 {
    ALL_CFS
        .iter()
        .filter_map(|name| db.cf_handle(name))
        .filter_map(|h| db.property_int_value_cf(h, "rocksdb.cur-size-all-mem-tables").ok().flatten())
        .sum()
}

pub fn cf<'a>(db: &'a DB, name: &'static str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} is created at open"))
}
