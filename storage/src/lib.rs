//! Pharos's per-shard storage engine: compressed series on RocksDB, with no networking and no Raft inside.
//! `pharos-raft` drives a [`ShardEngine`] as the state machine of a shard's Raft group.
//!
//! # Layout
//! - [`model`]: points, precision; [`line_protocol`]: the InfluxDB line-protocol parser and writer;
//!   [`packed`]: the compact encoding of point batches in Raft entries and forwarded writes.
//! - [`codec`]: sample compression (Gorilla delta-of-delta + XOR, decimal mantissas, float bit-pattern deltas),
//!   a tag byte per chunk.
//! - [`series`]: canonical series keys; [`index`]: the inverted tag index (roaring bitmaps).
//! - [`keys`]: RocksDB key layouts; [`db`]: the node's one RocksDB instance and its column families.
//! - [`engine`]: apply, heads, sealing, checkpoints, reads, snapshots; [`rollup`]: rollup block format;
//!   [`aggregate`]: partial aggregates and buckets; [`retention`]: policies and partitions; [`formats`]: the
//!   entry and snapshot formats a build reads and writes.
//!
//! # Data flow
//! ```text
//! points ──apply──► series ids (index) ──► head chunks (memory) ──seal──► chunks CF ──maintain──► rollup CFs
//!                                                │ checkpoint (with the Raft mark)         │ expire: delete_range
//!                                                ▼                                          ▼
//!                                             heads CF                               partitions dropped
//! reads: index → series ids → per-series buckets (rollup tiers + raw, stitched) → merged per group
//! ```

pub mod aggregate;
pub mod codec;
pub mod db;
pub mod engine;
pub mod error;
pub mod formats;
pub mod index;
pub mod keys;
pub mod line_protocol;
pub mod model;
pub mod packed;
pub mod retention;
pub mod rollup;
pub mod series;

pub use engine::{ApplyResult, Command, EngineOptions, GroupBy, GroupKey, ShardEngine, TierChoice};
pub use error::{ConfigError, StorageError};
pub use index::{Filter, Matcher};
pub use model::{Point, Precision, SmolStr};
pub use retention::{Retention, RetentionConfig, Tier};
