//! The node-to-node gRPC service: Raft RPCs of every group, and writes/reads forwarded to a shard's leader.

use std::sync::Arc;

use pharos_proto::internal::internal_server::Internal;
use pharos_proto::internal::{
    ForwardQueryReply, ForwardQueryRequest, ForwardWriteReply, ForwardWriteRequest, RaftReply, RaftRequest,
};
use pharos_raft::log_store::LogCache;
use pharos_raft::network::{serve_append, serve_snapshot, serve_vote};
use pharos_raft::{Raft, META_GROUP};
use pharos_storage::Point;
use tonic::{Request, Response, Status};

use crate::cluster::Node;
use crate::shard_rpc::{execute_local, ShardRequest, ShardRpcError};
use crate::writer::ShardWriteError;

pub struct InternalService {
    pub node: Arc<Node>,
}

impl InternalService {
    fn group(&self, group: u32) -> Result<(Raft, LogCache), Status> {
        if group == META_GROUP {
            return Ok((self.node.meta.clone(), self.node.meta_log_cache.clone()));
        }
        self.node
            .replica(group - 1)
            .map(|r| (r.raft.clone(), r.log_cache.clone()))
            .ok_or_else(|| Status::not_found(format!("node {} holds no replica of group {group}", self.node.id)))
    }
}

#[tonic::async_trait]
impl Internal for InternalService {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = req.into_inner();
        let (raft, cache) = self.group(r.group)?;
        Ok(Response::new(serve_append(&raft, &cache, &r.payload).await))
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = req.into_inner();
        Ok(Response::new(serve_vote(&self.group(r.group)?.0, &r.payload).await))
    }

    async fn install_snapshot(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = req.into_inner();
        Ok(Response::new(serve_snapshot(&self.group(r.group)?.0, &r.payload).await))
    }

    async fn forward_write(&self, req: Request<ForwardWriteRequest>) -> Result<Response<ForwardWriteReply>, Status> {
        let r = req.into_inner();
        let points: Vec<Point> = if r.packed.is_empty() {
            bincode::deserialize(&r.points).map_err(|e| Status::invalid_argument(format!("bad points: {e}")))?
        } else {
            pharos_storage::packed::decode(&r.packed).map_err(|e| Status::invalid_argument(e.to_string()))?
        };
        let fail = |code: &str, error: String, hint: u64| ForwardWriteReply {
            error,
            code: code.into(),
            leader_hint: hint,
            ..Default::default()
        };
        let Some(replica) = self.node.replica(r.shard) else {
            let hint = self.node.leader_of(r.shard).filter(|l| *l != self.node.id).unwrap_or(0);
            return Ok(Response::new(fail(
                "not_leader",
                format!("node {} holds no replica of shard {}", self.node.id, r.shard),
                hint,
            )));
        };
        let reply = match replica.writer.submit(std::sync::Arc::new(points)).await {
            Ok(a) => ForwardWriteReply {
                samples: a.samples_written,
                rejected_too_old: a.rejected_too_old,
                rejected_expired: a.rejected_expired,
                series_created: a.series_created,
                ..Default::default()
            },
            Err(e @ ShardWriteError::NotLeader { .. }) => {
                let hint = match &e {
                    ShardWriteError::NotLeader { leader, .. } => leader.unwrap_or(0),
                    _ => 0,
                };
                fail("not_leader", e.to_string(), hint)
            }
            Err(e @ ShardWriteError::Overloaded { .. }) => fail("overloaded", e.to_string(), 0),
            Err(e @ ShardWriteError::Closed { .. }) => fail("closed", e.to_string(), 0),
            Err(e) => fail("failed", e.to_string(), 0),
        };
        Ok(Response::new(reply))
    }

    async fn forward_query(&self, req: Request<ForwardQueryRequest>) -> Result<Response<ForwardQueryReply>, Status> {
        let r = req.into_inner();
        let sreq: ShardRequest = bincode::deserialize(&r.request)
            .map_err(|e| Status::invalid_argument(format!("bad shard request: {e}")))?;
        let reply = match execute_local(&self.node, r.shard, &sreq, !r.allow_stale).await {
            Ok(resp) => ForwardQueryReply {
                response: bincode::serialize(&resp).expect("responses serialize"),
                ..Default::default()
            },
            Err(ShardRpcError::NotLeader { leader, .. }) => {
                ForwardQueryReply { error: "not_leader".into(), leader_hint: leader.unwrap_or(0), ..Default::default() }
            }
            Err(ShardRpcError::NoReplica(_)) => ForwardQueryReply {
                error: "no_replica".into(),
                leader_hint: self.node.leader_of(r.shard).filter(|l| *l != self.node.id).unwrap_or(0),
                ..Default::default()
            },
            Err(ShardRpcError::Failed(why)) => ForwardQueryReply { error: why, ..Default::default() },
        };
        Ok(Response::new(reply))
    }

    async fn forward_meta(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = req.into_inner();
        let cmd =
            bincode::deserialize(&r.payload).map_err(|e| Status::invalid_argument(format!("bad meta command: {e}")))?;
        // Only the leader commits; a follower answers with an error instead of forwarding again (no loops).
        match self.node.meta.client_write(pharos_raft::Request::Meta(cmd)).await {
            Ok(resp) => match resp.data {
                pharos_raft::Response::Meta(m) => Ok(Response::new(RaftReply {
                    payload: bincode::serialize(&m).expect("serializes"),
                    error: String::new(),
                })),
                other => Ok(Response::new(RaftReply {
                    payload: Vec::new(),
                    error: format!("unexpected response {other:?}"),
                })),
            },
            Err(e) => Ok(Response::new(RaftReply { payload: Vec::new(), error: e.to_string() })),
        }
    }
}
