//! The Pharos node: every node runs the same code and can coordinate any request.
//!
//! # Layout
//! - [`config`]: settings (defaults < TOML < flags); [`server`]: start, serve, graceful stop.
//! - [`cluster`]: the node's Raft groups (meta + local shard replicas), bootstrap, leader lookup.
//! - [`routing`]: series -> shard on a consistent-hash ring.
//! - [`writer`]: per-shard actor with group commit and maintenance; [`write`]: the write coordinator.
//! - [`query`]: the query coordinator (fan-out to shard leaders, merge);
//! - [`shard_rpc`]: reads, query parts and status against one shard replica; [`internal`]: node-to-node gRPC.
//! - [`http`]: InfluxDB-compatible HTTP endpoints; [`grpc`]: the public gRPC API; [`metrics`]: /metrics.
//!
//! # Write path
//! ```text
//! HTTP /write, gRPC Write ─► parse ─► split by shard (routing) ─┬─► local leader: ShardWriter ─► Raft
//!                                                               └─► Internal.ForwardWrite ─► leader's ShardWriter
//! ShardWriter: drain queue (bounded) ─► one Raft entry ─► quorum commit ─► apply ─► answer each request
//! ```

pub mod alerting;
pub mod cluster;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod internal;
pub mod line_listeners;
pub mod logging;
pub mod metrics;
pub mod prom;
pub mod query;
pub mod routing;
pub mod scrape;
pub mod server;
pub mod shard_rpc;
pub mod write;
pub mod writer;
