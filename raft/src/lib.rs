//! openraft glue for Pharos: every node runs one meta group and the shard groups it holds replicas of, all
//! over one RocksDB instance and one gRPC channel per peer.
//!
//! # Layout
//! - [`types`]: the openraft type config (entries carry a shard [`pharos_storage::Command`] or a
//!   [`meta::MetaCommand`]).
//! - [`log_store`]: the Raft log of every group in the `raft_log`/`raft_state` column families.
//! - [`shard_sm`]: a shard's state machine over the storage engine; [`meta`]: the meta group's state machine
//!   (membership, shard map).
//! - [`network`]: the tonic transport, multiplexing groups over one channel per peer; snapshots travel in
//!   chunks read from and written to [`spool`] files.
//! - [`leadership`]: a watch on "this node leads the group" and actors scoped to leadership.
//!
//! ```text
//! client write ─► shard leader: Raft::client_write(Request::Shard(Write)) ─► log_store (synced) ─► replicate
//!                                                  committed ─► ShardStateMachine::apply ─► ShardEngine
//! ```

pub mod leadership;
pub mod log_store;
pub mod meta;
pub mod network;
pub mod shard_sm;
pub mod spool;
pub mod syncer;
pub mod types;
pub mod wire;

pub use types::{shard_group, GroupId, NodeAddr, NodeId, Raft, Request, Response, TypeConfig, META_GROUP};

/// Raft timing and log settings shared by every group of a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Time allowed for each snapshot chunk but the last to reach and be written by a follower.
    pub install_snapshot_timeout_ms: u64,
    /// Time allowed for the last chunk of a snapshot: the follower answers it once it has imported the
    /// whole snapshot, which takes seconds per GB (a shard of tens of GB on a busy disk: minutes).
    pub snapshot_import_timeout_ms: u64,
    /// Build a snapshot (which checkpoints the engine) after this many entries, so the log can be purged.
    pub snapshot_after_entries: u64,
    /// Entries kept behind a snapshot, so briefly lagging followers catch up from the log.
    pub keep_entries_after_snapshot: u64,
    /// Also snapshot once the log written since the last snapshot holds this many bytes (a few large
    /// batches reach it long before `snapshot_after_entries`).
    pub snapshot_after_bytes: u64,
    /// At most this many bytes of log are kept behind a snapshot (with `keep_entries_after_snapshot`,
    /// whichever keeps less).
    pub keep_bytes_after_snapshot: u64,
    /// A group that applied nothing for this long snapshots, purges its log up to the snapshot and compacts
    /// what it freed, so a node gives its space back soon after a load ends.
    pub idle_snapshot_ms: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            // openraft also uses the heartbeat interval as the timeout of each AppendEntries and read-index
            // round trip, which includes the follower's fsync: keep it above that with every group sharing a
            // channel and a disk.
            heartbeat_ms: 200,
            election_timeout_min_ms: 800,
            election_timeout_max_ms: 1600,
            install_snapshot_timeout_ms: 10_000,
            snapshot_import_timeout_ms: 1_800_000,
            snapshot_after_entries: 20_000,
            keep_entries_after_snapshot: 1_000,
            snapshot_after_bytes: 128 << 20,
            keep_bytes_after_snapshot: 64 << 20,
            idle_snapshot_ms: 30_000,
        }
    }
}

impl RaftSettings {
    pub fn to_openraft(&self, cluster: &str) -> Result<std::sync::Arc<openraft::Config>, openraft::ConfigError> {
        let c = openraft::Config {
            cluster_name: cluster.to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // openraft bounds every snapshot RPC by this; the network bounds each chunk but the last by
            // `install_snapshot_timeout_ms` itself (`Channels::chunk_timeout`).
            install_snapshot_timeout: self.snapshot_import_timeout_ms.max(self.install_snapshot_timeout_ms),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            // openraft times each AppendEntries out at `heartbeat_interval`: keep one RPC small enough to be sent,
            // fsynced and answered well within it even on a loaded machine.
            max_payload_entries: 4,
            // Snapshots go in 1 MiB chunks: the send throttle (`rebalance.max_bytes_per_sec`) waits between
            // chunks, and each chunk must reach the follower within `install_snapshot_timeout_ms`.
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        };
        Ok(std::sync::Arc::new(c.validate()?))
    }
}
