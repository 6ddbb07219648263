//! The Pharos node: every node runs the same code and can coordinate any request.
//!
//! # Layout
//! Lower modules never import higher ones (no import cycle; `rust_cycles.py` checks):
//! - [`clock`], [`config`], [`auth`] (who may call what), [`metrics`], [`routing`] (series -> shard), [`error`] (node errors, the wire's
//!   [`error::CallError`]);
//! - [`writer`]: the per-replica group-commit actor and maintenance; [`replicas`]: the local replicas and the
//!   leader services run on each while it leads; [`meta`]: this node's meta-group member and its applied
//!   state as a watch; [`peers`]: addresses, channels, leader hints;
//! - [`shard_rpc`]: what a replica answers; [`rpc`]: the one node-to-node client and retry policy;
//! - [`membership`]: changes to a group's Raft membership; [`placement`]: the rebalance planner (pure);
//! - [`cluster`]: opening and bootstrapping the Raft groups, and keeping the local replicas in line with the
//!   placement; [`rebalance`]: plans and their executor; [`join`]: node ids and joining;
//!   [`write`], [`query`]: the coordinators;
//!   [`ingest`]: the one ingest path; [`alerting`], [`scrape`]: actors, each given the parts it uses;
//! - [`node`]: the parts the front ends use; [`http`], [`grpc`], [`line_listeners`], [`internal`]
//!   (node-to-node gRPC), [`logging`]; [`server`]: wires the parts together, serves, stops.
//!
//! # Write path
//! ```text
//! HTTP /write, gRPC Write ─► parse ─► split by shard (routing) ─┬─► local leader: ShardWriter ─► Raft
//!                                                               └─► Internal.ForwardWrite ─► leader's ShardWriter
//! ShardWriter: drain queue (bounded) ─► one Raft entry ─► quorum commit ─► apply ─► answer each request
//! ```

pub mod alerting;
pub mod auth;
pub mod backup;
pub mod cardinality;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod disk;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod internal;
pub mod join;
pub mod line_listeners;
pub mod log_keeper;
pub mod logging;
pub mod membership;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod placement;
pub mod prom;
pub mod query;
pub mod rebalance;
pub mod replicas;
pub mod routing;
pub mod rpc;
pub mod scrape;
pub mod series_limits;
pub mod server;
pub mod shard_rpc;
pub mod tls;
pub mod ui;
pub mod write;
pub mod writer;
