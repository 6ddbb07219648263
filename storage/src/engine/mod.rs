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

mod snapshot;
pub use snapshot::export_snapshot;

/// What a Raft log entry asks of a shard. Serialized through [`CommandWire`]: writes as [`crate::packed`]
/// batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "CommandWire", try_from = "CommandWire")]
pub enum Command {
    /// Client batches coalesced into one entry (group commit); each gets its own [`ApplyResult`]. Shared,
    /// so a coordinator keeps its batch for a retry without copying it.
    Write(Vec<Arc<Vec<Point>>>),
    /// Periodic maintenance with the leader's clock.
    Maintain { now_ms: i64 },
    /// Replicated key-value state of actors that run on the shard's leader (alerting: rule states, the
    /// notification outbox). Applied atomically; kept with the shard's data, so it travels in snapshots.
    State { puts: Vec<(Vec<u8>, Vec<u8>)>, deletes: Vec<Vec<u8>> },
}

/// The serialized form of [`Command`]. Variants keep their positions (bincode numbers them), so entries
/// logged before the packed form existed still decode.
#[derive(Serialize, Deserialize)]
enum CommandWire {
    /// Batches as plain structures: only read, from logs written before `PackedWrite`.
    Write(Vec<Vec<Point>>),
    Maintain {
        now_ms: i64,
    },
    State {
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    },
    /// Each batch in [`crate::packed`] form.
    PackedWrite(Vec<PackedBatch>),
}

/// One batch's packed bytes (serialized as a byte string).
struct PackedBatch(Vec<u8>);

impl Serialize for PackedBatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for PackedBatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PackedBatch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a packed point batch")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<PackedBatch, E> {
                Ok(PackedBatch(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> std::result::Result<PackedBatch, E> {
                Ok(PackedBatch(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> std::result::Result<PackedBatch, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = a.next_element()? {
                    v.push(b);
                }
                Ok(PackedBatch(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl From<Command> for CommandWire {
    fn from(c: Command) -> CommandWire {
        match c {
            Command::Write(batches) => {
                CommandWire::PackedWrite(batches.iter().map(|b| PackedBatch(crate::packed::to_vec(b))).collect())
            }
            Command::Maintain { now_ms } => CommandWire::Maintain { now_ms },
            Command::State { puts, deletes } => CommandWire::State { puts, deletes },
        }
    }
}

impl TryFrom<CommandWire> for Command {
    type Error = crate::packed::PackedError;
    fn try_from(c: CommandWire) -> std::result::Result<Command, Self::Error> {
        Ok(match c {
            CommandWire::Write(batches) => Command::Write(batches.into_iter().map(Arc::new).collect()),
            CommandWire::PackedWrite(batches) => Command::Write(
                batches
                    .iter()
                    .map(|b| crate::packed::decode(&b.0).map(Arc::new))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            CommandWire::Maintain { now_ms } => Command::Maintain { now_ms },
            CommandWire::State { puts, deletes } => Command::State { puts, deletes },
        })
    }
}

impl Command {
    /// A write of one batch.
    pub fn write(points: Vec<Point>) -> Command {
        Command::Write(vec![Arc::new(points)])
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub samples_written: u64,
    /// Samples older than the series' newest sample minus the out-of-order window.
    pub rejected_too_old: u64,
    /// Samples older than the raw retention of their series (already expired).
    pub rejected_expired: u64,
    pub series_created: u64,
}

enum Accepted {
    Yes,
    TooOld,
    Expired,
}

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

    fn load(&mut self) -> Result<()> {
        let db = self.db.clone();
        let (lo, hi) = (keys::shard_prefix(self.shard).to_vec(), keys::shard_end(self.shard));
        for item in range_iter(&db, CF_SERIES, &lo, &hi) {
            let (k, v) = item?;
            let (_, sid) = keys::parse_series_key(&k).ok_or_else(|| StorageError::Corrupt {
                cf: CF_SERIES,
                what: "series key",
                key: k.to_vec(),
            })?;
            let (info, canon_len) = decode_stored(&v).ok_or_else(|| StorageError::Corrupt {
                cf: CF_SERIES,
                what: "series record",
                key: k.to_vec(),
            })?;
            if sid != self.index.next_id() {
                return Err(StorageError::Corrupt { cf: CF_SERIES, what: "series id gap", key: k.to_vec() });
            }
            self.index.insert(sid, &v[..canon_len], info);
            self.states.push(new_state());
        }
        // Time range of every series as of the last checkpoint (the log replay after it extends them).
        let rlo = range_key(self.shard, 0);
        let rhi = range_key(self.shard, u64::MAX);
        for item in range_iter(&db, CF_META, &rlo, &rhi) {
            let (k, v) = item?;
            let sid = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8-byte id"));
            let bad = || StorageError::Corrupt { cf: CF_META, what: "series range", key: k.to_vec() };
            if v.len() != 16 {
                return Err(bad());
            }
            let st = self.states.get_mut(sid as usize).ok_or_else(bad)?;
            st.min_ts = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            st.max_ts = i64::from_be_bytes(v[8..].try_into().expect("8 bytes"));
        }
        let flo = meta_key(self.shard, META_FLOOR);
        let fhi = meta_key(self.shard, "g");
        for item in range_iter(&db, CF_META, &flo, &fhi) {
            let (k, v) = item?;
            let bad = || StorageError::Corrupt { cf: CF_META, what: "expiry floor", key: k.to_vec() };
            let n = k.len();
            if n < 3 || v.len() != 8 {
                return Err(bad());
            }
            let class = u16::from_be_bytes([k[n - 3], k[n - 2]]);
            let tier = match k[n - 1] {
                0 => Tier::Raw,
                1 => Tier::Minute,
                2 => Tier::Hour,
                _ => return Err(bad()),
            };
            self.floors.insert((class, tier), i64::from_be_bytes(v[..].try_into().expect("8 bytes")));
        }
        for item in range_iter(&db, CF_HEADS, &lo, &hi) {
            let (k, v) = item?;
            let (_, sid) = keys::parse_series_key(&k).ok_or_else(|| StorageError::Corrupt {
                cf: CF_HEADS,
                what: "head key",
                key: k.to_vec(),
            })?;
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            codec::decode_chunk(&v, &mut ts, &mut vals).map_err(|source| StorageError::CorruptChunk {
                cf: CF_HEADS,
                what: "head",
                key: k.to_vec(),
                source,
            })?;
            let st = self.states.get_mut(sid as usize).ok_or_else(|| StorageError::Corrupt {
                cf: CF_HEADS,
                what: "head of unknown series",
                key: k.to_vec(),
            })?;
            let mut head = HeadAppender::new();
            for (&t, &x) in ts.iter().zip(&vals) {
                head.append(t, x);
            }
            self.samples_in_heads += ts.len() as u64;
            st.max_ts = st.max_ts.max(head.last_ts().unwrap_or(i64::MIN));
            st.min_ts = st.min_ts.min(head.first_ts().unwrap_or(i64::MAX));
            st.head = Some(head);
            st.persisted = true;
        }
        let meta = |name: &str| db.get_cf(cf(&db, CF_META), meta_key(self.shard, name));
        self.durable_mark = meta(META_MARK)?;
        self.mark = self.durable_mark.clone().unwrap_or_default();
        let as_i64 = |v: Option<Vec<u8>>| v.and_then(|b| b.try_into().ok()).map(i64::from_be_bytes);
        self.watermark_1m = as_i64(meta(META_WM_1M)?);
        self.watermark_1h = as_i64(meta(META_WM_1H)?);
        self.last_checkpoint_ms = as_i64(meta(META_LAST_CKPT)?).unwrap_or(i64::MIN);
        if as_i64(meta(META_H1_BLOCK)?) != Some(crate::retention::H1_BLOCK_MS) {
            self.resplit_hour_blocks(as_i64(meta(META_H1_BLOCK)?).unwrap_or(crate::retention::DAY))?;
        }
        Ok(())
    }

    /// Rewrites 1-hour rollup blocks written `old_ms` wide (data directories from before the width changed)
    /// into blocks of the current width: the buckets are kept as they are, only regrouped, so no raw data is
    /// read. Then records the width, so this runs once per shard.
    fn resplit_hour_blocks(&mut self, old_ms: i64) -> Result<()> {
        let new_ms = crate::retention::H1_BLOCK_MS;
        let (lo, hi) = (keys::shard_prefix(self.shard).to_vec(), keys::shard_end(self.shard));
        let mut batch = WriteBatch::default();
        let cfh = cf(&self.db, CF_ROLLUP_1H);
        let mut blocks = 0u64;
        if old_ms != new_ms {
            for item in range_iter(&self.db, CF_ROLLUP_1H, &lo, &hi) {
                let (k, v) = item?;
                let bad = |what| StorageError::Corrupt { cf: CF_ROLLUP_1H, what, key: k.to_vec() };
                let key = keys::parse_data_key(&k).ok_or_else(|| bad("rollup key"))?;
                let buckets = decode_rollup_block(CF_ROLLUP_1H, &k, &v)?;
                batch.delete_cf(cfh, &k);
                let mut i = 0;
                while i < buckets.len() {
                    let block = bucket_start(buckets[i].0, new_ms, 0);
                    let n = buckets[i..].iter().take_while(|b| bucket_start(b.0, new_ms, 0) == block).count();
                    let nk = data_key(self.shard, key.class, key.part, key.sid, block);
                    batch.put_cf(cfh, nk, rollup::encode_block(&buckets[i..i + n]));
                    i += n;
                }
                blocks += 1;
                if blocks % 10_000 == 0 {
                    // Bounded batches; a crash midway redoes the pass, which leaves resplit blocks as they are.
                    self.db.write(std::mem::take(&mut batch))?;
                }
            }
        }
        batch.put_cf(cf(&self.db, CF_META), meta_key(self.shard, META_H1_BLOCK), new_ms.to_be_bytes());
        self.db.write(batch)?;
        if blocks > 0 {
            tracing::info!(
                shard = self.shard,
                blocks,
                from_ms = old_ms,
                to_ms = new_ms,
                "1-hour rollup blocks resplit"
            );
        }
        Ok(())
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

    /// Applies one command. `mark` (the Raft log id, opaque here) is stored with the next checkpoint.
    pub fn apply(&mut self, cmd: &Command, mark: &[u8]) -> Result<Vec<ApplyResult>> {
        let res = match cmd {
            Command::Write(batches) => {
                let oldest = batches.iter().flat_map(|b| b.iter()).map(|p| p.timestamp).min();
                if let Some(t) = oldest {
                    self.record_change(t);
                }
                self.apply_write(batches)?
            }
            Command::Maintain { now_ms } => {
                self.mark = mark.to_vec();
                self.maintain(*now_ms)?;
                return Ok(Vec::new());
            }
            Command::State { puts, deletes } => {
                let meta = cf(&self.db, CF_META);
                let mut batch = WriteBatch::default();
                for k in deletes {
                    batch.delete_cf(meta, self.state_key(k));
                }
                for (k, v) in puts {
                    batch.put_cf(meta, self.state_key(k), v);
                }
                // Not synced: the Raft log holds the command, and replay from the durable mark re-applies it.
                self.db.write(batch)?;
                self.mark = mark.to_vec();
                return Ok(Vec::new());
            }
        };
        self.mark = mark.to_vec();
        Ok(res)
    }

    /// A number that grows with every change that can alter a read (writes, expiry, snapshot installs).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The oldest timestamp touched by changes after `version`: `Some(i64::MAX)` when nothing changed,
    /// `None` when the history no longer reaches back that far (assume everything changed). A cache of
    /// answers computed at `version` stays valid for data older than the returned time.
    pub fn oldest_change_since(&self, version: u64) -> Option<i64> {
        if version == self.version {
            return Some(i64::MAX);
        }
        match self.changes.front() {
            Some((first, _)) if *first <= version + 1 => {}
            _ => return None,
        }
        Some(self.changes.iter().filter(|(v, _)| *v > version).map(|(_, t)| *t).min().unwrap_or(i64::MAX))
    }

    fn record_change(&mut self, oldest_ts: i64) {
        self.version += 1;
        if self.changes.len() == CHANGE_HISTORY {
            self.changes.pop_front();
        }
        self.changes.push_back((self.version, oldest_ts));
    }

    fn state_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = meta_key(self.shard, META_STATE);
        k.extend_from_slice(key);
        k
    }

    /// Replicated state (see [`Command::State`]) whose keys start with `prefix`, in key order.
    pub fn state_scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let lo = self.state_key(prefix);
        let mut hi = lo.clone();
        // The smallest key greater than every key with this prefix.
        while let Some(last) = hi.pop() {
            if last < 0xff {
                hi.push(last + 1);
                break;
            }
        }
        if hi.is_empty() {
            hi = keys::shard_end(self.shard).to_vec();
        }
        let strip = self.state_key(b"").len();
        range_iter(&self.db, CF_META, &lo, &hi)
            .map(|r| r.map(|(k, v)| (k[strip..].to_vec(), v.to_vec())).map_err(Into::into))
            .collect()
    }

    /// Records a mark for a log entry that carries no command for the engine (blank or membership entries).
    pub fn set_mark(&mut self, mark: &[u8]) {
        self.mark = mark.to_vec();
    }

    fn apply_write(&mut self, batches: &[Arc<Vec<Point>>]) -> Result<Vec<ApplyResult>> {
        let mut results = Vec::with_capacity(batches.len());
        let mut batch = WriteBatch::default();
        let mut late: Vec<(SeriesId, i64, f64)> = Vec::new();
        let mut in_head: HashMap<SeriesId, Vec<(i64, f64)>> = HashMap::new();
        let rolled_before = self.watermark_1m.unwrap_or(i64::MIN).max(self.watermark_1h.unwrap_or(i64::MIN));
        let rounds = self.retention.rounds_values();
        let mut raw_floor: Option<(u16, i64)> = None;
        let mut key = std::mem::take(&mut self.scratch_key);
        for points in batches {
            let mut res = ApplyResult::default();
            for p in points.iter() {
                canonical_prefix(&p.measurement, &p.tags, &mut key);
                let prefix_len = key.len();
                // One lookup of the (long) measurement and tags per point; fields by name under it.
                let mut slot = self.index.prefix_slot(&key);
                let mut hint = 0;
                for (field, v) in p.fields.iter() {
                    let sid = match slot.and_then(|s| self.index.field_in(s, field, hint)) {
                        Some((sid, at)) => {
                            hint = at + 1;
                            sid
                        }
                        None => {
                            res.series_created += 1;
                            with_field(&mut key, prefix_len, field);
                            let sid = self.create_series(&key, p, field, &mut batch);
                            if slot.is_none() {
                                slot = self.index.prefix_slot(&key[..prefix_len]);
                            }
                            sid
                        }
                    };
                    let class = self.class_of(sid);
                    let v = match rounds.then(|| self.retention.significant_digits(class)).flatten() {
                        Some(digits) => crate::codec::decimal::round_significant(*v, digits),
                        None => *v,
                    };
                    // The raw floor of the class (one map lookup per class change, not per sample).
                    let raw_floor = match raw_floor {
                        Some((c, f)) if c == class => f,
                        _ => {
                            let f = self.class_floor(class, Tier::Raw);
                            raw_floor = Some((class, f));
                            f
                        }
                    };
                    match self.add_sample(sid, p.timestamp, v, raw_floor, &mut batch, &mut late, &mut in_head)? {
                        Accepted::Yes => {
                            res.samples_written += 1;
                            if p.timestamp < rolled_before {
                                let r = self.pending_rollups.entry(sid).or_insert((p.timestamp, p.timestamp));
                                r.0 = r.0.min(p.timestamp);
                                r.1 = r.1.max(p.timestamp);
                            }
                        }
                        Accepted::TooOld => res.rejected_too_old += 1,
                        Accepted::Expired => res.rejected_expired += 1,
                    }
                }
            }
            results.push(res);
        }
        self.scratch_key = key;
        for (sid, samples) in in_head {
            self.merge_into_head(sid, samples, &mut late);
        }
        self.db.write(batch)?;
        if !late.is_empty() {
            self.apply_late(late)?;
        }
        Ok(results)
    }

    /// Blocks of one tier that take raw data until rebuilt: [from, to), block-aligned, below the tier's
    /// watermark (see `pending_rollups`).
    fn pending_blocks(&self, sid: SeriesId, tier: Tier) -> Option<(i64, i64)> {
        let &(oldest, newest) = self.pending_rollups.get(&sid)?;
        let w = self.wm(tier).filter(|w| oldest < *w)?;
        let from = bucket_start(oldest, tier.block_ms(), 0);
        let to = bucket_start(newest.min(w - 1), tier.block_ms(), 0) + tier.block_ms();
        Some((from, to))
    }

    /// Series whose rollup blocks wait for a rebuild (reads take raw data there until then).
    pub fn pending_rollup_series(&self) -> usize {
        self.pending_rollups.len()
    }

    /// Rebuilds from raw data every rollup block that got samples below its tier's watermark since it was
    /// built (late samples, rewrites, a series writing its history after others moved the watermark on).
    fn rebuild_pending_rollups(&mut self) -> Result<()> {
        if self.pending_rollups.is_empty() {
            return Ok(());
        }
        let mut pending: Vec<SeriesId> = self.pending_rollups.keys().copied().collect();
        pending.sort_unstable();
        let mut batch = WriteBatch::default();
        for (n, sid) in pending.iter().enumerate() {
            for tier in [Tier::Minute, Tier::Hour] {
                let (Some((from, to)), Some(w)) = (self.pending_blocks(*sid, tier), self.wm(tier)) else { continue };
                // Raw data before its floor is gone: blocks there keep what they hold.
                let floor = self.tier_floor(*sid, Tier::Raw).max(self.tier_floor(*sid, tier));
                let mut block = from;
                while block < to {
                    if block + tier.block_ms() > floor {
                        // The newest block may be built only part way, up to the watermark.
                        self.build_rollup_block(
                            *sid,
                            tier,
                            block,
                            block,
                            (block + tier.block_ms()).min(w),
                            &mut batch,
                        )?;
                    }
                    block += tier.block_ms();
                }
            }
            if n % 1024 == 1023 {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        self.db.write(batch)?;
        self.pending_rollups.clear();
        Ok(())
    }

    fn create_series(&mut self, canonical: &[u8], p: &Point, field: &str, batch: &mut WriteBatch) -> SeriesId {
        let sid = self.index.next_id();
        let class = self.retention.class_of(&p.measurement);
        batch.put_cf(cf(&self.db, CF_SERIES), series_key(self.shard, sid), encode_stored(canonical, class));
        let info = SeriesInfo {
            measurement: p.measurement.as_str().into(),
            tags: p.tags.iter().map(|(k, v)| (k.as_str().into(), v.as_str().into())).collect(),
            field: field.into(),
            class,
        };
        self.index.insert(sid, canonical, info);
        self.states.push(new_state());
        sid
    }

    /// Adds one sample, unless it is older than the out-of-order window or the raw retention allows
    /// (`raw_floor`: the expiry floor of the series' class).
    #[allow(clippy::too_many_arguments)]
    fn add_sample(
        &mut self,
        sid: SeriesId,
        ts: i64,
        v: f64,
        raw_floor: i64,
        batch: &mut WriteBatch,
        late: &mut Vec<(SeriesId, i64, f64)>,
        in_head: &mut HashMap<SeriesId, Vec<(i64, f64)>>,
    ) -> Result<Accepted> {
        let max_chunk = self.opts.max_chunk_samples;
        if ts < raw_floor {
            return Ok(Accepted::Expired);
        }
        let st = &mut self.states[sid as usize];
        if st.max_ts != i64::MIN && ts < st.max_ts.saturating_sub(self.opts.ooo_window_ms) {
            return Ok(Accepted::TooOld);
        }
        match &mut st.head {
            Some(h) if ts > h.last_ts().unwrap_or(i64::MIN) => {
                let first = h.first_ts().unwrap_or(ts);
                if h.len() >= max_chunk
                    || part_of(first, Tier::Raw.partition_ms()) != part_of(ts, Tier::Raw.partition_ms())
                {
                    if let Some(pending) = in_head.remove(&sid) {
                        self.merge_into_head(sid, pending, late);
                    }
                    self.seal(sid, batch)?;
                    let st = &mut self.states[sid as usize];
                    let mut h = HeadAppender::new();
                    h.append(ts, v);
                    st.head = Some(h);
                } else {
                    h.append(ts, v);
                }
                self.samples_in_heads += 1;
            }
            Some(h) if ts >= h.first_ts().unwrap_or(i64::MAX) => {
                // Inside the head: merged once per series after the whole command, or before the head is
                // sealed (see merge_into_head), not by rebuilding the head per sample (concurrent writers
                // deliver many such samples at once).
                in_head.entry(sid).or_default().push((ts, v));
            }
            None if st.max_ts == i64::MIN || ts > st.max_ts => {
                let mut h = HeadAppender::new();
                h.append(ts, v);
                st.head = Some(h);
                self.samples_in_heads += 1;
            }
            _ => late.push((sid, ts, v)),
        }
        let st = &mut self.states[sid as usize];
        st.max_ts = st.max_ts.max(ts);
        st.min_ts = st.min_ts.min(ts);
        st.dirty = true;
        Ok(Accepted::Yes)
    }

    /// Inserts samples that fell inside a series' head (older than its newest sample) with one head rebuild,
    /// in apply order (a later write of a timestamp wins). Called before the head is sealed and after each
    /// command, so the head still covers them; anything below it goes to the sealed chunks.
    fn merge_into_head(&mut self, sid: SeriesId, samples: Vec<(i64, f64)>, late: &mut Vec<(SeriesId, i64, f64)>) {
        let st = &mut self.states[sid as usize];
        let Some(h) = st.head.as_mut() else {
            late.extend(samples.into_iter().map(|(ts, v)| (sid, ts, v)));
            return;
        };
        let first = h.first_ts().unwrap_or(i64::MAX);
        let (mut t, mut x) = (Vec::with_capacity(h.len() + samples.len()), Vec::with_capacity(h.len() + samples.len()));
        h.decode_into(&mut t, &mut x);
        let mut added = 0u64;
        for (ts, v) in samples {
            if ts < first {
                late.push((sid, ts, v));
                continue;
            }
            match t.binary_search(&ts) {
                Ok(k) => x[k] = v,
                Err(k) => {
                    t.insert(k, ts);
                    x.insert(k, v);
                    added += 1;
                }
            }
        }
        let mut nh = HeadAppender::new();
        for (&a, &b) in t.iter().zip(&x) {
            nh.append(a, b);
        }
        *h = nh;
        self.samples_in_heads += added;
    }

    /// Moves a series' head into a sealed chunk (in `batch`).
    fn seal(&mut self, sid: SeriesId, batch: &mut WriteBatch) -> Result<()> {
        let class = self.class_of(sid);
        let st = &mut self.states[sid as usize];
        let Some(h) = st.head.take() else { return Ok(()) };
        st.dirty = true;
        if h.is_empty() {
            return Ok(());
        }
        let (mut t, mut x) = (Vec::with_capacity(h.len()), Vec::with_capacity(h.len()));
        h.decode_into(&mut t, &mut x);
        self.samples_in_heads -= t.len() as u64;
        let key = data_key(self.shard, class, part_of(t[0], Tier::Raw.partition_ms()), sid, t[0]);
        batch.put_cf(cf(&self.db, CF_CHUNKS), key, codec::encode_chunk_from(&t, &x, Some(h.stream())));
        Ok(())
    }

    fn class_of(&self, sid: SeriesId) -> u16 {
        self.index.info(sid).map(|i| i.class).unwrap_or(0)
    }

    /// Samples below a series' head go into sealed chunks by read-modify-write. Chunks of one series within a
    /// partition tile time: chunk i holds [first_ts_i, first_ts_{i+1}), so a late sample joins the chunk
    /// with the greatest first timestamp at or before it, or else the partition's first chunk.
    fn apply_late(&mut self, mut late: Vec<(SeriesId, i64, f64)>) -> Result<()> {
        // Stable sort keeps apply order for equal (series, timestamp): the last write wins.
        late.sort_by_key(|&(sid, ts, _)| (sid, ts));
        let mut edits: HashMap<Vec<u8>, (Vec<u8>, Vec<i64>, Vec<f64>)> = HashMap::new();
        let part_ms = Tier::Raw.partition_ms();
        let mut i = 0;
        while i < late.len() {
            // One run per (series, partition): its chunk keys are listed once, not once per sample.
            let (sid, first_ts, _) = late[i];
            let part = part_of(first_ts, part_ms);
            let run_end =
                i + late[i..].iter().take_while(|&&(s, t, _)| s == sid && part_of(t, part_ms) == part).count();
            let class = self.class_of(sid);
            let lo = data_key(self.shard, class, part, sid, i64::MIN);
            let hi = data_key(self.shard, class, part, sid, i64::MAX);
            // Chunk keys of this series in this partition (sorted): stored ones, then those this run starts.
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for item in range_iter(&self.db, CF_CHUNKS, &lo, &hi) {
                let (k, _) = item?;
                keys.push(k.to_vec());
            }
            for &(_, ts, v) in &late[i..run_end] {
                let probe = data_key(self.shard, class, part, sid, ts);
                // The chunk with the greatest first timestamp at or before the sample, else the first one.
                let at = keys.partition_point(|k| k.as_slice() <= probe.as_slice());
                let target = if at > 0 { keys.get(at - 1) } else { keys.first() }.cloned();
                let entry_key =
                    match target {
                        Some(k) => {
                            if !edits.contains_key(&k) {
                                let raw = self.db.get_cf(cf(&self.db, CF_CHUNKS), &k)?.ok_or_else(|| {
                                    StorageError::Corrupt {
                                        cf: CF_CHUNKS,
                                        what: "chunk vanished during late write",
                                        key: k.clone(),
                                    }
                                })?;
                                let (mut t, mut x) = (Vec::new(), Vec::new());
                                codec::decode_chunk(&raw, &mut t, &mut x).map_err(|source| {
                                    StorageError::CorruptChunk { cf: CF_CHUNKS, what: "chunk", key: k.clone(), source }
                                })?;
                                edits.insert(k.clone(), (k.clone(), t, x));
                            }
                            k
                        }
                        None => {
                            let k = probe.to_vec();
                            edits.insert(k.clone(), (Vec::new(), Vec::new(), Vec::new()));
                            keys.insert(at, k.clone());
                            k
                        }
                    };
                let (_, t, x) = edits.get_mut(&entry_key).expect("inserted above");
                match t.binary_search(&ts) {
                    Ok(k) => x[k] = v,
                    Err(k) => {
                        t.insert(k, ts);
                        x.insert(k, v);
                    }
                }
            }
            i = run_end;
        }
        let mut batch = WriteBatch::default();
        let chunks = cf(&self.db, CF_CHUNKS);
        for (key, (orig, t, x)) in edits {
            let dk = keys::parse_data_key(&key).expect("keys built here");
            let new_key = data_key(dk.shard, dk.class, dk.part, dk.sid, t[0]);
            if !orig.is_empty() && orig.as_slice() != new_key.as_slice() {
                batch.delete_cf(chunks, &orig);
            }
            batch.put_cf(chunks, new_key, codec::encode_chunk(&t, &x));
        }
        self.db.write(batch)?;
        Ok(())
    }

    // ------------------------------------------------------------------ maintenance

    fn maintain(&mut self, now_ms: i64) -> Result<()> {
        // 1. Seal heads of series that went quiet, so dead series hold no memory and closed periods are on disk.
        let mut batch = WriteBatch::default();
        let idle_before = now_ms.saturating_sub(self.opts.idle_seal_ms);
        for sid in 0..self.states.len() as SeriesId {
            let st = &self.states[sid as usize];
            if st.head.as_ref().is_some_and(|h| h.last_ts().is_some_and(|t| t < idle_before)) {
                self.seal(sid, &mut batch)?;
            }
        }
        self.db.write(batch)?;
        self.rebuild_pending_rollups()?;
        // 2. Build rollup blocks of periods no sample can enter any more: older than the out-of-order window
        // behind the newest data (not behind the clock: a backfill of old data in time order would otherwise
        // land below built blocks and rebuild them sample by sample). Without new data, blocks still get
        // built before raw data could expire unrolled.
        let min_raw_keep = self.retention.classes().map(|(_, d)| d.of(Tier::Raw)).min().unwrap_or(0);
        let minute_after = self.opts.minute_rollup_after_ms.unwrap_or(min_raw_keep - crate::retention::DAY);
        let newest = self.states.iter().map(|s| s.max_ts).max().unwrap_or(i64::MIN);
        let by_data = now_ms.min(newest).saturating_sub(self.opts.ooo_window_ms);
        let closed_before =
            by_data.max(now_ms.saturating_sub(minute_after)).min(now_ms.saturating_sub(self.opts.ooo_window_ms));
        let minute_before = closed_before.min(now_ms.saturating_sub(minute_after));
        self.build_closed_blocks(Tier::Minute, minute_before, now_ms)?;
        self.build_closed_blocks(Tier::Hour, closed_before, now_ms)?;
        // 3. Drop expired partitions of every class and tier.
        self.expire(now_ms)?;
        // 4. Checkpoint now and then.
        if self.last_checkpoint_ms == i64::MIN
            || now_ms.saturating_sub(self.last_checkpoint_ms) >= self.opts.checkpoint_interval_ms
        {
            self.last_checkpoint_ms = now_ms;
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Builds a tier from its watermark up to `closed_before` (rounded down to the tier's build step), one
    /// block at a time; the block holding the old watermark keeps its buckets before it and gains the new
    /// ones.
    fn build_closed_blocks(&mut self, tier: Tier, closed_before: i64, now_ms: i64) -> Result<()> {
        let block_ms = tier.block_ms();
        let target = bucket_start(closed_before, tier.build_step_ms(), 0);
        let raw_keep = self.retention.classes().map(|(_, d)| d.of(Tier::Raw)).max().unwrap_or(0);
        let start = match self.wm(tier) {
            Some(w) => w,
            None => bucket_start(now_ms.saturating_sub(raw_keep), block_ms, 0).min(target),
        };
        let mut from = start;
        while from < target {
            let block = bucket_start(from, block_ms, 0);
            let to = (block + block_ms).min(target);
            let mut batch = WriteBatch::default();
            for sid in 0..self.states.len() as SeriesId {
                let st = &self.states[sid as usize];
                // A series without samples in [from, to) keeps its block as it is.
                if st.max_ts >= from && st.min_ts < to {
                    self.build_rollup_block(sid, tier, block, from, to, &mut batch)?;
                }
            }
            from = to;
            self.db.write(batch)?;
        }
        match tier {
            Tier::Minute => self.watermark_1m = Some(target.max(start)),
            Tier::Hour => self.watermark_1h = Some(target.max(start)),
            Tier::Raw => {}
        }
        Ok(())
    }

    fn wm(&self, tier: Tier) -> Option<i64> {
        match tier {
            Tier::Minute => self.watermark_1m,
            Tier::Hour => self.watermark_1h,
            Tier::Raw => None,
        }
    }

    /// (Re)builds one rollup block of one series: the stored block's buckets before `from` are kept, those
    /// in [`from`, `to`) are computed from raw data; an empty block deletes the record. `from` and `to` lie on
    /// bucket boundaries inside the block.
    fn build_rollup_block(
        &self,
        sid: SeriesId,
        tier: Tier,
        block: i64,
        from: i64,
        to: i64,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let class = self.class_of(sid);
        let key = data_key(self.shard, class, part_of(block, tier.partition_ms()), sid, block);
        let cfh = cf(&self.db, tier_cf(tier));
        let mut buckets = Vec::new();
        if from > block {
            if let Some(v) = self.db.get_pinned_cf(cfh, &key)? {
                let stored = decode_rollup_block(tier_cf(tier), &key, &v)?;
                buckets.extend(stored.into_iter().take_while(|b| b.0 < from));
            }
        }
        let (mut t, mut x) = (Vec::new(), Vec::new());
        self.read_raw(sid, from, to, &mut t, &mut x)?;
        let mut fresh = Vec::new();
        bucketize(&t, &x, tier.bucket_ms(), 0, &mut fresh);
        rollup::exact_decimal_sums(&t, &x, tier.bucket_ms(), &mut fresh);
        buckets.append(&mut fresh);
        if buckets.is_empty() {
            batch.delete_cf(cfh, key);
        } else {
            batch.put_cf(cfh, key, rollup::encode_block(&buckets));
        }
        Ok(())
    }

    fn expire(&mut self, now_ms: i64) -> Result<()> {
        let mut batch = WriteBatch::default();
        let classes: Vec<(u16, crate::retention::Durations)> = self.retention.classes().map(|(c, d)| (c, *d)).collect();
        for (class, keep) in classes {
            for tier in [Tier::Raw, Tier::Minute, Tier::Hour] {
                let cutoff = now_ms.saturating_sub(keep.of(tier));
                // Partitions strictly before the cutoff's partition end at or before the cutoff.
                let cutoff_part = part_of(cutoff, tier.partition_ms());
                let lo = keys::part_prefix(self.shard, class, i32::MIN as i64);
                let hi = keys::part_prefix(self.shard, class, cutoff_part);
                let floor = cutoff_part.saturating_mul(tier.partition_ms());
                let f = self.floors.entry((class, tier)).or_insert(i64::MIN);
                let moved = floor > *f;
                *f = (*f).max(floor);
                if moved {
                    self.record_change(i64::MIN);
                }
                if lo < hi {
                    let name = match tier {
                        Tier::Raw => CF_CHUNKS,
                        t => tier_cf(t),
                    };
                    batch.delete_range_cf(cf(&self.db, name), lo, hi);
                }
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Writes every changed head and the current mark in one batch. After this, a restart needs only the log
    /// after the mark.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.rebuild_pending_rollups()?;
        let mut batch = WriteBatch::default();
        let heads = cf(&self.db, CF_HEADS);
        for (sid, st) in self.states.iter_mut().enumerate() {
            if !st.dirty {
                continue;
            }
            st.dirty = false;
            let mut range = [0u8; 16];
            range[..8].copy_from_slice(&st.min_ts.to_be_bytes());
            range[8..].copy_from_slice(&st.max_ts.to_be_bytes());
            batch.put_cf(cf(&self.db, CF_META), range_key(self.shard, sid as SeriesId), range);
            let key = series_key(self.shard, sid as SeriesId);
            match &st.head {
                Some(h) if !h.is_empty() => {
                    let (mut t, mut x) = (Vec::with_capacity(h.len()), Vec::with_capacity(h.len()));
                    h.decode_into(&mut t, &mut x);
                    batch.put_cf(
                        heads,
                        key,
                        codec::encode_chunk_with(codec::Encoding::Gorilla, &t, &x).expect("gorilla encodes anything"),
                    );
                    st.persisted = true;
                }
                _ if st.persisted => {
                    batch.delete_cf(heads, key);
                    st.persisted = false;
                }
                _ => {}
            }
        }
        let meta = cf(&self.db, CF_META);
        batch.put_cf(meta, meta_key(self.shard, META_MARK), &self.mark);
        if let Some(w) = self.watermark_1m {
            batch.put_cf(meta, meta_key(self.shard, META_WM_1M), w.to_be_bytes());
        }
        if let Some(w) = self.watermark_1h {
            batch.put_cf(meta, meta_key(self.shard, META_WM_1H), w.to_be_bytes());
        }
        batch.put_cf(meta, meta_key(self.shard, META_LAST_CKPT), self.last_checkpoint_ms.to_be_bytes());
        for ((class, tier), f) in &self.floors {
            batch.put_cf(meta, floor_key(self.shard, *class, *tier), f.to_be_bytes());
        }
        // A synced write also makes every earlier (unsynced) batch of this engine durable: they precede it in
        // the WAL.
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        self.durable_mark = Some(self.mark.clone());
        Ok(())
    }

    // ------------------------------------------------------------------ reads

    /// Series of measurements accepted by `measurement` that pass `filter`.
    pub fn select(&self, measurement: &dyn Fn(&str) -> bool, filter: &Filter) -> roaring::RoaringTreemap {
        self.index.select(measurement, filter)
    }

    /// Raw samples of one series in [start, end), in time order, appended to the outputs.
    pub fn read_raw(&self, sid: SeriesId, start: i64, end: i64, ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<()> {
        let Some((start, end)) = self.clamp(sid, Tier::Raw, start, end) else { return Ok(()) };
        // Sealed chunks hold only samples older than the head's first (later samples join the head), so a
        // range that starts inside the head needs no chunk lookups: recent reads touch memory only.
        let head_first = self.states[sid as usize].head.as_ref().and_then(|h| h.first_ts());
        let chunks_end = head_first.map_or(end, |f| end.min(f));
        let class = self.class_of(sid);
        let width = Tier::Raw.partition_ms();
        let (mut t, mut x) = (Vec::with_capacity(256), Vec::with_capacity(256));
        let chunks = cf(&self.db, CF_CHUNKS);
        let parts = (start < chunks_end).then(|| part_of(start, width)..=part_of(chunks_end - 1, width));
        for part in parts.into_iter().flatten() {
            let lo = data_key(self.shard, class, part, sid, i64::MIN);
            let hi = data_key(self.shard, class, part, sid, i64::MAX);
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(lo.to_vec());
            ro.set_iterate_upper_bound(hi.to_vec());
            let mut it = self.db.raw_iterator_cf_opt(chunks, ro);
            // The chunk holding `start` may begin before it: position on the last chunk at or before start.
            it.seek_for_prev(data_key(self.shard, class, part, sid, start));
            if !it.valid() {
                it.seek_to_first();
            }
            while it.valid() {
                let (k, v) = (it.key().unwrap_or_default(), it.value().unwrap_or_default());
                let h = codec::chunk_header(v).map_err(|source| StorageError::CorruptChunk {
                    cf: CF_CHUNKS,
                    what: "chunk header",
                    key: k.to_vec(),
                    source,
                })?;
                if h.min_ts >= end {
                    break;
                }
                if h.max_ts >= start {
                    t.clear();
                    x.clear();
                    codec::decode_chunk(v, &mut t, &mut x).map_err(|source| StorageError::CorruptChunk {
                        cf: CF_CHUNKS,
                        what: "chunk",
                        key: k.to_vec(),
                        source,
                    })?;
                    push_range(&t, &x, start, end, ts, vals);
                }
                it.next();
            }
            it.status()?;
        }
        if let Some(h) = &self.states[sid as usize].head {
            if h.last_ts().is_some_and(|l| l >= start) && h.first_ts().is_some_and(|f| f < end) {
                t.clear();
                x.clear();
                h.decode_into(&mut t, &mut x);
                push_range(&t, &x, start, end, ts, vals);
            }
        }
        Ok(())
    }

    /// Per-bucket partial aggregates of one series in [start, end) for buckets of `width` ms shifted by
    /// `offset`, using rollup tiers where they exist and divide the bucket, and raw data elsewhere.
    pub fn series_buckets(
        &self,
        sid: SeriesId,
        start: i64,
        end: i64,
        width: i64,
        offset: i64,
        choice: TierChoice,
        out: &mut Vec<(i64, Partial)>,
    ) -> Result<()> {
        out.clear();
        if start >= end || width <= 0 {
            return Ok(());
        }
        let mut segments: Vec<(Tier, i64, i64)> = Vec::new();
        let mut t0 = start;
        if choice == TierChoice::Auto {
            for tier in [Tier::Hour, Tier::Minute] {
                let b = tier.bucket_ms();
                let Some(wm) = self.wm(tier) else { continue };
                if width % b != 0 || offset.rem_euclid(b) != 0 {
                    continue;
                }
                let keep_from = self.tier_floor(sid, tier);
                let a = align_up(t0.max(keep_from), b);
                let z = align_down(end.min(wm), b);
                if a < z {
                    if t0 < a {
                        segments.push((Tier::Raw, t0, a));
                    }
                    segments.push((tier, a, z));
                    t0 = z;
                }
            }
        }
        if t0 < end {
            segments.push((Tier::Raw, t0, end));
        }
        if self.pending_rollups.contains_key(&sid) {
            segments = self.around_pending_blocks(sid, segments);
        }
        let (mut t, mut x) = (Vec::new(), Vec::new());
        for (tier, a, z) in segments {
            match tier {
                Tier::Raw => {
                    t.clear();
                    x.clear();
                    self.read_raw(sid, a, z, &mut t, &mut x)?;
                    let mut part = Vec::new();
                    bucketize(&t, &x, width, offset, &mut part);
                    append_buckets(out, &part);
                }
                tier => {
                    let mut part: Vec<(i64, Partial)> = Vec::new();
                    self.read_rollups(sid, tier, a, z, &mut |bts, p| {
                        let b = bucket_start(bts, width, offset);
                        match part.last_mut() {
                            Some((lb, lp)) if *lb == b => lp.merge(p),
                            _ => part.push((b, *p)),
                        }
                    })?;
                    append_buckets(out, &part);
                }
            }
        }
        Ok(())
    }

    /// Splits tier segments so that blocks waiting for a rebuild are read from raw data.
    fn around_pending_blocks(&self, sid: SeriesId, segments: Vec<(Tier, i64, i64)>) -> Vec<(Tier, i64, i64)> {
        let mut out = Vec::with_capacity(segments.len() + 2);
        for (tier, a, z) in segments {
            match (tier, self.pending_blocks(sid, tier)) {
                (Tier::Minute | Tier::Hour, Some((p, q))) if p < z && q > a => {
                    let (p, q) = (p.max(a), q.min(z));
                    for seg in [(tier, a, p), (Tier::Raw, p, q), (tier, q, z)] {
                        if seg.1 < seg.2 {
                            out.push(seg);
                        }
                    }
                }
                _ => out.push((tier, a, z)),
            }
        }
        out
    }

    /// Earliest time a tier still holds data for this series (retention of its class).
    /// The earliest time the series can still have raw samples (its retention class's expiry floor;
    /// `i64::MIN` before any expiry ran).
    pub fn raw_floor(&self, sid: SeriesId) -> i64 {
        self.tier_floor(sid, Tier::Raw)
    }

    fn tier_floor(&self, sid: SeriesId, tier: Tier) -> i64 {
        self.class_floor(self.class_of(sid), tier)
    }

    fn class_floor(&self, class: u16, tier: Tier) -> i64 {
        self.floors.get(&(class, tier)).copied().unwrap_or(i64::MIN)
    }

    /// Narrows a read to where the series can have data in a tier: its time range and the expiry floor.
    fn clamp(&self, sid: SeriesId, tier: Tier, start: i64, end: i64) -> Option<(i64, i64)> {
        let st = self.states.get(sid as usize)?;
        let floor = self.floors.get(&(self.class_of(sid), tier)).copied().unwrap_or(i64::MIN);
        let start = start.max(st.min_ts).max(floor);
        let end = end.min(st.max_ts.saturating_add(1));
        (start < end).then_some((start, end))
    }

    fn read_rollups(
        &self,
        sid: SeriesId,
        tier: Tier,
        start: i64,
        end: i64,
        f: &mut dyn FnMut(i64, &Partial),
    ) -> Result<()> {
        let Some((cstart, cend)) = self.clamp(sid, tier, bucket_start(start, tier.block_ms(), 0), end) else {
            return Ok(());
        };
        let (start, end) = (start.max(bucket_start(cstart, tier.block_ms(), 0)), cend.min(end));
        if start >= end {
            return Ok(());
        }
        let class = self.class_of(sid);
        let cfh = cf(&self.db, tier_cf(tier));
        let first_block = bucket_start(start, tier.block_ms(), 0);
        for part in part_of(first_block, tier.partition_ms())..=part_of(end - 1, tier.partition_ms()) {
            let lo = data_key(self.shard, class, part, sid, first_block.max(part * tier.partition_ms()));
            let hi = data_key(self.shard, class, part, sid, i64::MAX);
            for item in range_iter(&self.db, tier_cf(tier), &lo, &hi) {
                let (k, v) = item?;
                let dk = keys::parse_data_key(&k).ok_or_else(|| StorageError::Corrupt {
                    cf: tier_cf(tier),
                    what: "rollup key",
                    key: k.to_vec(),
                })?;
                if dk.ts >= end {
                    break;
                }
                let buckets = decode_rollup_block(tier_cf(tier), &k, &v)?;
                for (b, p) in &buckets {
                    if *b >= start && *b < end {
                        f(*b, p);
                    }
                }
            }
            let _ = cfh;
        }
        Ok(())
    }

    /// Partial aggregates of many series, merged per group and bucket. `series` must come from [`select`].
    pub fn aggregate(
        &self,
        series: &roaring::RoaringTreemap,
        start: i64,
        end: i64,
        width: i64,
        offset: i64,
        group_by: &GroupBy,
        choice: TierChoice,
    ) -> Result<Vec<(GroupKey, Vec<(i64, Partial)>)>> {
        let mut groups: HashMap<GroupKey, Vec<(i64, Partial)>> = HashMap::new();
        let mut buf = Vec::new();
        for sid in series.iter() {
            let Some(info) = self.index.info(sid) else { continue };
            self.series_buckets(sid, start, end, width, offset, choice, &mut buf)?;
            if buf.is_empty() {
                continue;
            }
            let key = group_key(info, group_by);
            let acc = groups.entry(key).or_default();
            *acc = crate::aggregate::merge_buckets(acc, &buf);
        }
        let mut out: Vec<_> = groups.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
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

fn group_key(info: &SeriesInfo, by: &GroupBy) -> GroupKey {
    match by {
        GroupBy::None => Vec::new(),
        GroupBy::All => info.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        GroupBy::Tags(keys) => keys.iter().map(|k| (k.clone(), info.tag(k).unwrap_or("").to_string())).collect(),
    }
}

fn align_up(t: i64, b: i64) -> i64 {
    let d = t.div_euclid(b) * b;
    if d == t {
        t
    } else {
        d.saturating_add(b)
    }
}

fn align_down(t: i64, b: i64) -> i64 {
    t.div_euclid(b) * b
}

/// Appends buckets that follow `out` in time; a bucket straddling two segments is merged.
fn append_buckets(out: &mut Vec<(i64, Partial)>, more: &[(i64, Partial)]) {
    for (b, p) in more {
        match out.last_mut() {
            Some((lb, lp)) if lb == b => lp.merge(p),
            _ => out.push((*b, *p)),
        }
    }
}

fn push_range(t: &[i64], x: &[f64], start: i64, end: i64, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
    let a = t.partition_point(|&v| v < start);
    let z = t.partition_point(|&v| v < end);
    ts.extend_from_slice(&t[a..z]);
    vals.extend_from_slice(&x[a..z]);
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
