//! One shard replica's storage engine: the deterministic state machine that Raft drives.
//!
//! ```text
//!   apply(Command::Write(points))          apply(Command::Maintain { now_ms })
//!        │ series id (new ids in apply order)      │ seal idle heads, build closed rollup blocks,
//!        ▼                                         │ drop expired partitions, checkpoint
//!   head chunk per series (memory, Gorilla) ──seal──► `chunks` CF (best codec)  ──► rollup blocks
//!        │ late sample below the head                ▲ read-modify-write                (1m, 1h)
//!        └───────────────────────────────────────────┘
//! ```
//!
//! Durability: heads live in memory. A checkpoint writes every changed head and the caller's *mark* (the Raft
//! applied log id) in one RocksDB write batch; after a crash the engine reopens at that checkpoint and the
//! caller replays the log after the mark. Replay is idempotent: sealing is a pure function of the samples, and
//! a sample at an existing timestamp replaces the value (last write wins).
//!
//! Time never comes from the local clock: `Maintain` carries the leader's clock through the log, so every
//! replica seals, rolls up and expires identically.
//!
//! Files: `command.rs` (what a log entry asks), `load.rs` (opening), `apply.rs` (writes, late samples, actor
//! state, change history), `maintain.rs` (sealing, rollups, expiry, checkpoints), `read.rs` (selection, raw
//! reads, aggregates), `snapshot.rs` (export and streamed import).

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::aggregate::{bucket_start, bucketize, Partial};
use crate::codec::{self, HeadAppender};
use crate::db::{cf, CF_CHUNKS, CF_HEADS, CF_META, CF_ROLLUP_1H, CF_ROLLUP_1M, CF_SERIES};
use crate::error::{ConfigError, Result, StorageError};
use crate::index::{Filter, Index};
use crate::keys::{self, data_key, meta_key, part_of, series_key, SeriesId, ShardId};
use crate::model::Point;
use crate::retention::{Retention, Tier, HOUR, MINUTE};
use crate::rollup;
use crate::series::{canonical_prefix, decode_stored, encode_stored, with_field, SeriesInfo};

mod apply;
mod command;
mod load;
mod maintain;
mod read;
mod snapshot;

pub use command::{ApplyResult, Command};
pub use snapshot::export_snapshot;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// A head chunk is sealed when it holds this many samples (or crosses a partition boundary).
    pub max_chunk_samples: usize,
    /// Samples up to this much older than their series' newest sample are accepted.
    pub ooo_window_ms: i64,
    /// Heads not appended to for this long are sealed at maintenance (bounds memory of dead series).
    pub idle_seal_ms: i64,
    /// Maintenance checkpoints heads at most this often (bounds log replay after a crash).
    pub checkpoint_interval_ms: i64,
    /// Build 1-minute rollup blocks once their period is this old. None: one day before the shortest raw
    /// retention, since while raw data exists it answers 1-minute buckets as fast as the tier would.
    pub minute_rollup_after_ms: Option<i64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_chunk_samples: 360,
            ooo_window_ms: HOUR,
            idle_seal_ms: HOUR,
            checkpoint_interval_ms: 5 * MINUTE,
            minute_rollup_after_ms: None,
        }
    }
}

impl EngineOptions {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(2..=u16::MAX as usize).contains(&self.max_chunk_samples) {
            return Err(ConfigError::Engine("max_chunk_samples must be in 2..=65535".into()));
        }
        if self.ooo_window_ms < 0 || self.idle_seal_ms <= 0 || self.checkpoint_interval_ms <= 0 {
            return Err(ConfigError::Engine("windows and intervals must be positive".into()));
        }
        Ok(())
    }
}

#[derive(Default)]
struct SeriesState {
    head: Option<HeadAppender>,
    /// Newest timestamp ever applied (i64::MIN before the first sample).
    max_ts: i64,
    /// Oldest timestamp ever applied (i64::MAX before the first sample); reads start no earlier.
    min_ts: i64,
    /// The head changed since the last checkpoint.
    dirty: bool,
    /// A head record exists in `heads` (must be deleted when the head empties).
    persisted: bool,
}

/// How a read should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierChoice {
    /// Coarsest tier whose bucket divides the requested one, stitched with raw data where rollups end.
    Auto,
    /// Raw samples only (tests compare this with Auto).
    RawOnly,
}

/// Tag keys to group by in [`ShardEngine::aggregate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupBy {
    None,
    Tags(Vec<String>),
    /// Every tag (InfluxQL `GROUP BY *`).
    All,
}

/// Group key: (tag key, tag value) pairs in group-by order; a missing tag has value "".
pub type GroupKey = Vec<(String, String)>;

pub struct ShardEngine {
    db: Arc<DB>,
    shard: ShardId,
    retention: Arc<Retention>,
    opts: EngineOptions,
    index: Index,
    /// (time, the next series id then), one per maintenance pass for the last two hours, for how many
    /// series were created since a time (in memory: a restart starts it again).
    series_marks: std::collections::VecDeque<(i64, u64)>,
    states: Vec<SeriesState>,
    /// Every bucket before these times is in its tier (None before the first maintenance). The 1-minute
    /// watermark lies on a block boundary; the 1-hour one on an hour, inside a block built part way.
    watermark_1m: Option<i64>,
    watermark_1h: Option<i64>,
    /// Series that got samples below a watermark since their blocks were last built: (oldest, newest) such
    /// sample. Their blocks in that range are rebuilt from raw data at the next maintenance or checkpoint
    /// (whichever comes first, so a durable mark never has stale blocks behind it); until then reads take raw
    /// data there. A backfill costs one rebuild per block per maintenance, not a block update per batch.
    pending_rollups: HashMap<SeriesId, (i64, i64)>,
    last_checkpoint_ms: i64,
    /// The caller's mark of the last applied command, and the one stored at the last checkpoint.
    mark: Vec<u8>,
    durable_mark: Option<Vec<u8>>,
    samples_in_heads: u64,
    scratch_key: Vec<u8>,
    /// Per (class, tier): data before this time was expired (reads start no earlier).
    floors: HashMap<(u16, Tier), i64>,
    /// Changes that can alter a read, for caches of derived answers: (version, oldest timestamp touched).
    changes: std::collections::VecDeque<(u64, i64)>,
    version: u64,
}

static ENGINE_INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 32);

/// How many recent changes [`ShardEngine::oldest_change_since`] can look back over.
const CHANGE_HISTORY: usize = 8192;

const META_MARK: &str = "mark";
const META_WM_1M: &str = "wm1m";
const META_WM_1H: &str = "wm1h";
const META_LAST_CKPT: &str = "ckpt";
/// Width of the 1-hour tier's blocks this shard's data is written with (absent: a day, the first format).
const META_H1_BLOCK: &str = "h1blk";
/// `r` + series id: the series' (min_ts, max_ts), written at checkpoints so opening needs no chunk scan.
const META_RANGE: &str = "r";
/// `f` + class + tier: expiry floors.
const META_FLOOR: &str = "f";
/// `s` + key: replicated actor state ([`Command::State`]).
const META_STATE: &str = "s";

fn new_state() -> SeriesState {
    SeriesState { max_ts: i64::MIN, min_ts: i64::MAX, ..Default::default() }
}

fn range_key(shard: ShardId, sid: SeriesId) -> Vec<u8> {
    let mut k = meta_key(shard, META_RANGE);
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

fn tier_code(t: Tier) -> u8 {
    match t {
        Tier::Raw => 0,
        Tier::Minute => 1,
        Tier::Hour => 2,
    }
}

fn floor_key(shard: ShardId, class: u16, tier: Tier) -> Vec<u8> {
    let mut k = meta_key(shard, META_FLOOR);
    k.extend_from_slice(&class.to_be_bytes());
    k.push(tier_code(tier));
    k
}

impl ShardEngine {
    /// Opens a shard replica's engine, loading its series index and checkpointed heads.
    pub fn open(db: Arc<DB>, shard: ShardId, retention: Arc<Retention>, opts: EngineOptions) -> Result<ShardEngine> {
        opts.validate()?;
        if Self::import_marked(&db, shard)? {
            return Err(StorageError::Snapshot(format!(
                "shard {shard}: an import of a snapshot was cut off; ShardEngine::recover_import empties it"
            )));
        }
        let mut e = ShardEngine {
            db,
            shard,
            retention,
            opts,
            index: Index::default(),
            series_marks: Default::default(),
            states: Vec::new(),
            watermark_1m: None,
            watermark_1h: None,
            pending_rollups: HashMap::new(),
            last_checkpoint_ms: i64::MIN,
            mark: Vec::new(),
            durable_mark: None,
            samples_in_heads: 0,
            scratch_key: Vec::with_capacity(256),
            floors: HashMap::new(),
            changes: std::collections::VecDeque::new(),
            // Versions of different engine instances (reopened, or replaced by a snapshot) never meet, so a
            // cache keyed by an old instance's version is never taken for valid.
            version: ENGINE_INSTANCES.fetch_add(1 << 32, std::sync::atomic::Ordering::Relaxed),
        };
        e.load()?;
        Ok(e)
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Oldest and newest timestamp ever applied to a series (None before its first sample).
    pub fn series_time_range(&self, sid: SeriesId) -> Option<(i64, i64)> {
        let st = self.states.get(sid as usize)?;
        (st.max_ts != i64::MIN).then_some((st.min_ts, st.max_ts))
    }

    pub fn series_count(&self) -> usize {
        self.index.len()
    }

    /// Series statistics, with the series created since `since_ms` (as far back as this replica's marks
    /// go: the time they start from is returned with them).
    pub fn cardinality(&self, since_ms: i64, top: usize) -> (crate::index::Cardinality, i64) {
        let (from, sid) = self
            .series_marks
            .iter()
            .find(|(t, _)| *t >= since_ms)
            .or(self.series_marks.back())
            .copied()
            .unwrap_or((i64::MAX, self.index.next_id()));
        (self.index.cardinality(sid, top), from)
    }

    pub(crate) fn mark_series(&mut self, now_ms: i64) {
        self.series_marks.push_back((now_ms, self.index.next_id()));
        while self.series_marks.front().is_some_and(|(t, _)| *t < now_ms - 2 * 3_600_000) {
            self.series_marks.pop_front();
        }
    }

    /// How many series a point would create: its fields that no series of its measurement and tags has
    /// yet. `key` is scratch space.
    pub fn new_series_of(&self, p: &crate::Point, key: &mut Vec<u8>) -> usize {
        crate::series::canonical_prefix(&p.measurement, &p.tags, key);
        match self.index.prefix_slot(key) {
            None => p.fields.len(),
            Some(slot) => p.fields.iter().filter(|(f, _)| self.index.field_in(slot, f, 0).is_none()).count(),
        }
    }

    pub fn samples_in_heads(&self) -> u64 {
        self.samples_in_heads
    }

    /// How far the 1-minute and 1-hour tiers are built: every bucket before these times is in the tier
    /// (None before the first maintenance). Queries read raw data after them.
    pub fn rollup_watermarks(&self) -> (Option<i64>, Option<i64>) {
        (self.watermark_1m, self.watermark_1h)
    }

    /// The caller's mark stored by the last checkpoint: replay the log after it.
    pub fn durable_mark(&self) -> Option<&[u8]> {
        self.durable_mark.as_deref()
    }

    /// The mark of the last applied command (durable or not).
    pub fn mark(&self) -> &[u8] {
        &self.mark
    }
}

/// A stored rollup block's buckets; a block that does not decode is a corruption error naming its key.
fn decode_rollup_block(cf: &'static str, key: &[u8], v: &[u8]) -> Result<Vec<(i64, Partial)>> {
    rollup::decode_block(v).map_err(|source| StorageError::CorruptChunk {
        cf,
        what: "rollup block",
        key: key.to_vec(),
        source,
    })
}

fn tier_cf(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => CF_ROLLUP_1M,
        Tier::Hour => CF_ROLLUP_1H,
        Tier::Raw => CF_CHUNKS,
    }
}

fn range_iter<'a>(
    db: &'a DB,
    name: &'static str,
    lo: &[u8],
    hi: &[u8],
) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>> + 'a {
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(hi.to_vec());
    db.iterator_cf_opt(cf(db, name), ro, IteratorMode::From(lo, Direction::Forward))
}
