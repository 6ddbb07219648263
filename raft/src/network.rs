//! Raft transport over tonic: every group of a node talks to a peer over one shared HTTP/2 channel, each
//! request naming its group. Payloads are openraft's own request and response types in bincode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use pharos_proto::internal::internal_client::InternalClient;
use pharos_proto::internal::{RaftReply, RaftRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::types::{GroupId, NodeAddr, NodeId, TypeConfig};

/// One lazily-connected channel per peer address, shared by every group and by request forwarding.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

impl Channels {
    pub fn get(&self, addr: &str) -> Result<InternalClient<Channel>, TransportError> {
        let mut map = self.inner.lock().expect("channel map lock");
        if let Some(ch) = map.get(addr) {
            return Ok(InternalClient::new(ch.clone())
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20));
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| TransportError(format!("bad peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = ep.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(InternalClient::new(ch).max_decoding_message_size(256 << 20).max_encoding_message_size(256 << 20))
    }
}

/// Creates per-target clients for one group.
#[derive(Clone)]
pub struct Network {
    pub group: GroupId,
    pub channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> GroupClient {
        GroupClient { group: self.group, target, addr: node.grpc.clone(), channels: self.channels.clone() }
    }
}

pub struct GroupClient {
    group: GroupId,
    target: NodeId,
    addr: String,
    channels: Channels,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl GroupClient {
    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = crate::wire::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.channels.get(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let request = RaftRequest { group: self.group, payload };
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::Snapshot => client.install_snapshot(request).await,
            }
        };
        let reply: RaftReply = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(format!(
                    "rpc to node {} timed out",
                    self.target
                )))))
            }
            Ok(Err(status)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(format!(
                    "node {}: {status}",
                    self.target
                )))))
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if !reply.error.is_empty() {
            return Err(RPCError::Network(NetworkError::new(&TransportError(reply.error))));
        }
        let res: Result<Resp, RaftError<NodeId, E>> =
            crate::wire::decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

/// Server side: decodes a request for `raft`, runs it, and encodes openraft's result.
pub async fn serve_append(raft: &crate::types::Raft, payload: &[u8]) -> RaftReply {
    match crate::wire::decode::<AppendEntriesRequest<TypeConfig>>(payload) {
        Ok(req) => encode_reply(&raft.append_entries(req).await),
        Err(e) => RaftReply { payload: Vec::new(), error: format!("bad append-entries payload: {e}") },
    }
}

pub async fn serve_vote(raft: &crate::types::Raft, payload: &[u8]) -> RaftReply {
    match crate::wire::decode::<VoteRequest<NodeId>>(payload) {
        Ok(req) => encode_reply(&raft.vote(req).await),
        Err(e) => RaftReply { payload: Vec::new(), error: format!("bad vote payload: {e}") },
    }
}

pub async fn serve_snapshot(raft: &crate::types::Raft, payload: &[u8]) -> RaftReply {
    match crate::wire::decode::<InstallSnapshotRequest<TypeConfig>>(payload) {
        Ok(req) => encode_reply(&raft.install_snapshot(req).await),
        Err(e) => RaftReply { payload: Vec::new(), error: format!("bad snapshot payload: {e}") },
    }
}

fn encode_reply<T: Serialize>(res: &T) -> RaftReply {
    match crate::wire::encode(res) {
        Ok(payload) => RaftReply { payload, error: String::new() },
        Err(e) => RaftReply { payload: Vec::new(), error: format!("encoding reply: {e}") },
    }
}
