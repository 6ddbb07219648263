//! The openraft type configuration shared by every group of a node (the meta group and every shard group).

use std::fmt;

use pharos_storage::{ApplyResult, Command};
use serde::{Deserialize, Serialize};

use crate::meta::{MetaCommand, MetaResponse};

pub type NodeId = u64;
/// Group 0 is the meta group; shard `s` is group `s + 1`.
pub type GroupId = u32;
pub const META_GROUP: GroupId = 0;

pub fn shard_group(shard: u32) -> GroupId {
    shard + 1
}

/// How to reach a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAddr {
    /// host:port of the gRPC listener (public API and internal traffic).
    pub grpc: String,
    /// host:port of the HTTP listener.
    pub http: String,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grpc={} http={}", self.grpc, self.http)
    }
}

/// A Raft log entry's application payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Shard(Command),
    Meta(MetaCommand),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries, and commands sent to a group of the other kind.
    None,
    Shard(Vec<ApplyResult>),
    Meta(MetaResponse),
}

openraft::declare_raft_types!(
    /// Pharos's Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
        // A file in the node's spool (see `spool.rs`): snapshots are streamed, never held in memory whole.
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeAddr>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeAddr>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
