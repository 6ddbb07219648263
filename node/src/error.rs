//! Node-level errors and their one mapping each to HTTP status codes and gRPC statuses; [`CallError`], why
//! a node-to-node call failed, and its wire form.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::StatusCode;
use pharos_proto::internal as pb;
use pharos_raft::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(
        "another pharos is using the data directory {0} (its lock is held); stop it, or give this node its own \
         --data-dir"
    )]
    DataDirInUse(PathBuf),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] pharos_storage::StorageError),
    #[error(transparent)]
    StorageConfig(#[from] pharos_storage::ConfigError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the {0} group has no leader yet; retry shortly")]
    NoLeader(&'static str),
    #[error("forwarding to another node failed: {0}")]
    Forward(String),
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    #[error("{0}")]
    Identity(String),
    #[error("joining the cluster through {addr}: {why}")]
    Join { addr: String, code: tonic::Code, why: String },
}

/// Why a write failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {limit} bytes (limits.max_body_bytes)")]
    TooLarge { limit: usize },
    #[error("{0}; retry after a short pause")]
    Overloaded(String),
    #[error("{0}; retry shortly")]
    Unavailable(String),
    /// A node's disk is below its free-space floor (HTTP 507, gRPC ResourceExhausted).
    #[error("{0}")]
    DiskFull(String),
    #[error("{0}")]
    Internal(String),
}

impl From<CallError> for WriteError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Overloaded { .. } => WriteError::Overloaded(chain(&e)),
            CallError::DiskFull { .. } => WriteError::DiskFull(chain(&e)),
            CallError::Invalid { why } => WriteError::BadRequest(why),
            _ => WriteError::Unavailable(chain(&e)),
        }
    }
}

/// An error and its sources, one after the other ("a: b: c").
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.ends_with(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

impl WriteError {
    pub fn http_status(&self) -> StatusCode {
        match self {
            WriteError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WriteError::Overloaded(_) | WriteError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WriteError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            WriteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        match self {
            WriteError::BadRequest(m) => tonic::Status::invalid_argument(m.clone()),
            WriteError::TooLarge { .. } | WriteError::DiskFull(_) => {
                tonic::Status::resource_exhausted(self.to_string())
            }
            WriteError::Overloaded(_) | WriteError::Unavailable(_) => {
                let mut s = tonic::Status::unavailable(self.to_string());
                s.metadata_mut().insert("retry-after-ms", tonic::metadata::MetadataValue::from_static("500"));
                s
            }
            WriteError::Internal(m) => tonic::Status::internal(m.clone()),
        }
    }

    /// Short code for metrics and for forwarded replies.
    pub fn code(&self) -> &'static str {
        match self {
            WriteError::BadRequest(_) => "invalid_argument",
            WriteError::TooLarge { .. } => "too_large",
            WriteError::Overloaded(_) => "overloaded",
            WriteError::Unavailable(_) => "unavailable",
            WriteError::DiskFull(_) => "disk_full",
            WriteError::Internal(_) => "internal",
        }
    }
}

/// A Raft group, as a call names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Meta,
    Shard(u32),
}

impl Group {
    /// The Raft group id the wire uses (0: meta, shard s: s + 1).
    pub fn id(self) -> pharos_raft::GroupId {
        match self {
            Group::Meta => pharos_raft::META_GROUP,
            Group::Shard(s) => s.saturating_add(1),
        }
    }

    pub fn from_id(id: pharos_raft::GroupId) -> Group {
        match id {
            pharos_raft::META_GROUP => Group::Meta,
            g => Group::Shard(g - 1),
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Meta => write!(f, "the meta group"),
            Group::Shard(s) => write!(f, "shard {s}"),
        }
    }
}

/// Why a call to a group failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("node {node} does not lead {group}")]
    NotLeader { node: NodeId, group: Group, leader: Option<NodeId> },
    #[error("node {node} holds no replica of {group}")]
    NoReplica { node: NodeId, group: Group, leader: Option<NodeId> },
    #[error("the write queue of {group} on node {node} is full")]
    Overloaded { node: NodeId, group: Group },
    /// The replica is stopping or has no quorum now; another node may lead next.
    #[error("{group} on node {node} cannot serve now: {why}")]
    Unavailable { node: NodeId, group: Group, why: String },
    #[error("node {node} ({addr}) did not answer")]
    Unreachable {
        node: NodeId,
        addr: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request is wrong; no retry can help.
    #[error("{why}")]
    Invalid { why: String },
    #[error("{group} on node {node}: {why}")]
    Failed { node: NodeId, group: Group, why: String },
    /// The node's disk is below its free-space floor; it refuses writes until space returns.
    #[error("{group} on node {node} refuses writes: {why}")]
    DiskFull { node: NodeId, group: Group, why: String },
    /// Retries ran out: the last refusal or failure is the source.
    #[error("{group} has no reachable leader after {}s", waited.as_secs_f64())]
    NoLeader {
        group: Group,
        waited: Duration,
        #[source]
        last: Option<Box<CallError>>,
    },
}

impl CallError {
    /// Whether another try (at another node, or after an election) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            CallError::NotLeader { .. }
                | CallError::NoReplica { .. }
                | CallError::Unavailable { .. }
                | CallError::Unreachable { .. }
        )
    }

    /// Whether waiting may help: a retryable refusal, a group that had no reachable leader for a while
    /// (an election, a loaded machine), or a full queue.
    pub fn transient(&self) -> bool {
        self.retryable() || matches!(self, CallError::NoLeader { .. } | CallError::Overloaded { .. })
    }

    /// The leader the refusing node named, if any.
    pub fn leader_hint(&self) -> Option<NodeId> {
        match self {
            CallError::NotLeader { leader, .. } | CallError::NoReplica { leader, .. } => *leader,
            _ => None,
        }
    }

    /// Fills in the leader hint of a refusal that has none.
    pub fn or_hint(mut self, hint: Option<NodeId>) -> CallError {
        if let CallError::NotLeader { leader, node, .. } | CallError::NoReplica { leader, node, .. } = &mut self {
            if leader.is_none() {
                *leader = hint.filter(|h| h != node);
            }
        }
        self
    }

    /// The wire form (`raft.proto`'s `CallError`).
    pub fn to_proto(&self) -> pb::CallError {
        use pb::call_error::Kind;
        let kind = match self {
            CallError::NotLeader { .. } => Kind::NotLeader,
            CallError::NoReplica { .. } => Kind::NoReplica,
            CallError::Overloaded { .. } => Kind::Overloaded,
            CallError::Unavailable { .. } | CallError::Unreachable { .. } | CallError::NoLeader { .. } => {
                Kind::Unavailable
            }
            CallError::Invalid { .. } => Kind::Invalid,
            CallError::Failed { .. } => Kind::Failed,
            CallError::DiskFull { .. } => Kind::DiskFull,
        };
        let message = match self {
            CallError::Unavailable { why, .. }
            | CallError::Failed { why, .. }
            | CallError::DiskFull { why, .. }
            | CallError::Invalid { why } => why.clone(),
            other => chain(other),
        };
        pb::CallError { kind: kind as i32, message, leader_hint: self.leader_hint().unwrap_or(0) }
    }

    /// A failure `node` answered for `group`.
    pub fn from_proto(node: NodeId, group: Group, e: pb::CallError) -> CallError {
        use pb::call_error::Kind;
        let leader = (e.leader_hint != 0).then_some(e.leader_hint);
        match Kind::try_from(e.kind).unwrap_or(Kind::Failed) {
            Kind::NotLeader => CallError::NotLeader { node, group, leader },
            Kind::NoReplica => CallError::NoReplica { node, group, leader },
            Kind::Overloaded => CallError::Overloaded { node, group },
            Kind::Unavailable => CallError::Unavailable { node, group, why: e.message },
            Kind::Invalid => CallError::Invalid { why: e.message },
            Kind::DiskFull => CallError::DiskFull { node, group, why: e.message },
            Kind::Unspecified | Kind::Failed => CallError::Failed { node, group, why: e.message },
        }
    }

    pub(crate) fn transport(node: NodeId, addr: &str, status: tonic::Status) -> CallError {
        match status.code() {
            tonic::Code::InvalidArgument => CallError::Invalid { why: status.message().to_string() },
            _ => CallError::Unreachable { node, addr: addr.to_string(), source: Box::new(status) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind a node can answer crosses the wire as itself, with its leader hint; callers decide on
    /// the kind (retry elsewhere or not), so a kind that came back as another would change behaviour.
    #[test]
    fn call_errors_cross_the_wire_as_their_kind() {
        let g = Group::Shard(3);
        let cases = vec![
            CallError::NotLeader { node: 2, group: g, leader: Some(5) },
            CallError::NoReplica { node: 2, group: g, leader: None },
            CallError::Overloaded { node: 2, group: g },
            CallError::Unavailable { node: 2, group: g, why: "stopping".into() },
            CallError::Invalid { why: "bad point".into() },
            CallError::Failed { node: 2, group: g, why: "disk".into() },
            CallError::DiskFull { node: 2, group: g, why: "12 MB free".into() },
        ];
        for e in cases {
            let back = CallError::from_proto(2, g, e.to_proto());
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e), "{e:?} came back as {back:?}");
            assert_eq!(back.leader_hint(), e.leader_hint());
            assert_eq!(back.retryable(), e.retryable());
            assert_eq!(back.to_string(), e.to_string());
        }
        // A kind this build does not know (a newer peer) is a plain failure, not a retry loop.
        let unknown = pharos_proto::internal::CallError { kind: 99, message: "new".into(), leader_hint: 0 };
        assert!(!CallError::from_proto(1, g, unknown).retryable());
    }

    #[test]
    fn a_refusal_gets_a_hint_only_when_it_has_none_and_never_itself() {
        let g = Group::Meta;
        let e = CallError::NotLeader { node: 1, group: g, leader: None };
        assert_eq!(e.or_hint(Some(1)).leader_hint(), None, "a node never names itself");
        let e = CallError::NotLeader { node: 1, group: g, leader: None };
        assert_eq!(e.or_hint(Some(3)).leader_hint(), Some(3));
        let e = CallError::NotLeader { node: 1, group: g, leader: Some(2) };
        assert_eq!(e.or_hint(Some(3)).leader_hint(), Some(2), "the replica's own view wins");
    }

    #[test]
    fn write_errors_keep_the_cause_chain() {
        let last = CallError::Unavailable { node: 2, group: Group::Shard(1), why: "no quorum".into() };
        let e =
            CallError::NoLeader { group: Group::Shard(1), waited: Duration::from_secs(10), last: Some(Box::new(last)) };
        let w = WriteError::from(e);
        assert_eq!(w.code(), "unavailable");
        let text = w.to_string();
        assert!(text.contains("shard 1 has no reachable leader after 10s") && text.contains("no quorum"), "{text}");
    }
}
