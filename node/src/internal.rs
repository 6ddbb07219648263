//! The node-to-node gRPC service: Raft RPCs of every group, and writes/reads forwarded to a shard's leader.

use std::sync::Arc;

use pharos_proto::internal::internal_server::Internal;
use pharos_proto::internal::{
    CallReply, ForwardQueryReply, ForwardQueryRequest, ForwardWriteReply, ForwardWriteRequest, MembershipRequest,
    RaftReply, RaftRequest,
};
use pharos_raft::log_store::LogCache;
use pharos_raft::network::{serve_append, serve_snapshot, serve_vote};
use pharos_raft::{Raft, META_GROUP};
use pharos_storage::Point;
use tonic::{Request, Response, Status};

use crate::error::{CallError, Group};
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::replicas::Replicas;
use crate::rpc::Client;
use crate::shard_rpc::{execute_local, ShardRequest};

/// The service's view of the node: its groups, and the client whose leader guess goes into refusals.
pub struct InternalService {
    pub meta: Arc<Meta>,
    pub replicas: Arc<Replicas>,
    pub client: Arc<Client>,
    pub metrics: Arc<Metrics>,
    /// The limits every written point obeys, forwarded or not.
    pub limits: crate::config::Limits,
}

impl InternalService {
    fn group(&self, group: u32) -> Result<(Raft, LogCache), Status> {
        if group == META_GROUP {
            return Ok((self.meta.raft.clone(), self.meta.log_cache.clone()));
        }
        self.replicas
            .get(group - 1)
            .map(|r| (r.raft.clone(), r.log_cache.clone()))
            .ok_or_else(|| Status::not_found(format!("node {} holds no replica of group {group}", self.replicas.me())))
    }

    /// A refusal with the best leader hint this node has.
    fn refusal(&self, group: Group, e: CallError) -> pharos_proto::internal::CallError {
        e.or_hint(self.client.leader_of(group)).to_proto()
    }
}

#[tonic::async_trait]
impl Internal for InternalService {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let r = req.into_inner();
        let (raft, cache) = self.group(r.group)?;
        let (reply, from_leader) = serve_append(&raft, &cache, &r.payload).await;
        if from_leader && r.group != META_GROUP {
            if let Some(replica) = self.replicas.get(r.group - 1) {
                replica.heard_from_leader();
            }
        }
        Ok(Response::new(reply))
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
        // A forwarded part obeys the limits a direct request does (its coordinator checked them; a peer on an
        // older version, or one whose limits differ, may not have).
        if points.len() > self.limits.max_points_per_request {
            return Err(Status::invalid_argument(format!(
                "more than {} points in one request",
                self.limits.max_points_per_request
            )));
        }
        if let Err((i, e)) = self.limits.check_points(&points, crate::clock::now_ms()) {
            return Err(Status::invalid_argument(format!("point {i}: {e}")));
        }
        let (me, group) = (self.replicas.me(), Group::Shard(r.shard));
        let result = match self.replicas.get(r.shard) {
            None => Err(CallError::NoReplica { node: me, group, leader: None }),
            Some(replica) => replica.writer.submit(Arc::new(points)).await.map_err(|e| e.into_call_error(me)),
        };
        let reply = match result {
            Ok(a) => ForwardWriteReply {
                samples: a.samples_written,
                rejected_too_old: a.rejected_too_old,
                rejected_expired: a.rejected_expired,
                series_created: a.series_created,
                rejected_series_limit: a.rejected_series_limit,
                series_limit: a.series_limit.unwrap_or_default(),
                error: None,
            },
            Err(e) => ForwardWriteReply { error: Some(self.refusal(group, e)), ..Default::default() },
        };
        Ok(Response::new(reply))
    }

    async fn forward_query(&self, req: Request<ForwardQueryRequest>) -> Result<Response<ForwardQueryReply>, Status> {
        let r = req.into_inner();
        let sreq: ShardRequest = bincode::deserialize(&r.request)
            .map_err(|e| Status::invalid_argument(format!("bad shard request: {e}")))?;
        let reply = match execute_local(&self.replicas, &self.metrics, r.shard, &sreq, !r.allow_stale).await {
            Ok(resp) => ForwardQueryReply {
                response: bincode::serialize(&resp).expect("responses serialize"),
                ..Default::default()
            },
            Err(e) => ForwardQueryReply { error: Some(self.refusal(Group::Shard(r.shard), e)), ..Default::default() },
        };
        Ok(Response::new(ForwardQueryReply { now_ms: crate::clock::now_ms(), ..reply }))
    }

    async fn forward_meta(&self, req: Request<RaftRequest>) -> Result<Response<CallReply>, Status> {
        let r = req.into_inner();
        let cmd =
            bincode::deserialize(&r.payload).map_err(|e| Status::invalid_argument(format!("bad meta command: {e}")))?;
        // Only the leader commits; a follower refuses with its leader hint instead of forwarding again (no loops).
        let reply = match self.client.meta_commit_local(cmd).await {
            Ok(m) => CallReply { payload: bincode::serialize(&m).expect("serializes"), error: None },
            Err(e) => CallReply { payload: Vec::new(), error: Some(self.refusal(Group::Meta, e)) },
        };
        Ok(Response::new(reply))
    }

    async fn membership(&self, req: Request<MembershipRequest>) -> Result<Response<CallReply>, Status> {
        let r = req.into_inner();
        let op: crate::membership::MembershipOp =
            bincode::deserialize(&r.op).map_err(|e| Status::invalid_argument(format!("bad membership op: {e}")))?;
        let group = Group::from_id(r.group);
        let result = crate::membership::execute_here(&self.meta, &self.replicas, group, &op).await;
        let reply = match result {
            Ok(m) => CallReply { payload: bincode::serialize(&m).expect("serializes"), error: None },
            Err(e) => CallReply { payload: Vec::new(), error: Some(self.refusal(group, e)) },
        };
        Ok(Response::new(reply))
    }
}
