//! Where the other nodes are: their addresses (the founding list, then the meta group's record), one
//! pooled gRPC channel per peer, and the last leader each group's replies named.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use pharos_proto::internal::internal_client::InternalClient;
use pharos_raft::network::Channels;
use pharos_raft::network::PeerChannel;
use pharos_raft::{NodeAddr, NodeId};

use crate::error::Group;
use crate::meta::Meta;

pub struct Peers {
    me: NodeId,
    my_http: String,
    /// gRPC address of every node named at start (`--initial-cluster`).
    founding: BTreeMap<NodeId, String>,
    meta: Arc<Meta>,
    channels: Channels,
    /// Last leader named per Raft group, by a reply or a Raft message.
    hints: RwLock<HashMap<Group, NodeId>>,
    /// When a waiting call last asked a shard's replicas who leads, and their answer (see
    /// `rpc::Client::leader_moved_from`).
    asked: std::sync::Mutex<HashMap<u32, (std::time::Instant, Option<NodeId>)>>,
}

impl Peers {
    pub fn new(
        me: NodeId,
        my_http: String,
        founding: BTreeMap<NodeId, String>,
        meta: Arc<Meta>,
        channels: Channels,
    ) -> Peers {
        Peers { me, my_http, founding, meta, channels, hints: RwLock::new(HashMap::new()), asked: Default::default() }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// A node's gRPC address: the meta group's record, or the founding list until the meta group has one.
    pub fn addr(&self, node: NodeId) -> Option<String> {
        let state = self.meta.state();
        if !state.nodes.is_empty() {
            return state.nodes.get(&node).map(|a| a.grpc.clone());
        }
        self.founding.get(&node).cloned()
    }

    /// Every member, with its addresses (the HTTP one where known): the meta group's record (nodes join and
    /// leave), or the founding list until the meta group has one.
    pub fn known(&self) -> BTreeMap<NodeId, NodeAddr> {
        let state = self.meta.state();
        let mut out: BTreeMap<NodeId, NodeAddr> = if state.nodes.is_empty() {
            self.founding.iter().map(|(id, g)| (*id, NodeAddr { grpc: g.clone(), http: String::new() })).collect()
        } else {
            state.nodes.clone()
        };
        if let Some(me) = out.get_mut(&self.me) {
            me.http = self.my_http.clone();
        }
        out
    }

    /// For a call waiting on a shard's leader: the answer of an ask less than 400 ms old (Some: the leader
    /// another replica named, or None while that ask runs or found none), or None when this call should ask
    /// now (it is then the one asking, until [`Peers::answer_leader`]).
    pub fn asked_leader(&self, shard: u32) -> Option<Option<NodeId>> {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match asked.get(&shard) {
            Some((t, answer)) if now.duration_since(*t) < std::time::Duration::from_millis(400) => Some(*answer),
            _ => {
                asked.insert(shard, (now, None));
                None
            }
        }
    }

    pub fn answer_leader(&self, shard: u32, leader: Option<NodeId>) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked.insert(shard, (std::time::Instant::now(), leader));
    }

    /// Every other known node and its gRPC address.
    pub fn others(&self) -> Vec<(NodeId, String)> {
        self.known().into_iter().filter(|(id, _)| *id != self.me).map(|(id, a)| (id, a.grpc)).collect()
    }

    /// The pooled channel to a gRPC address (connected lazily, kept across calls).
    pub fn channel(&self, addr: &str) -> Result<InternalClient<PeerChannel>, pharos_raft::network::TransportError> {
        self.channels.get(addr)
    }

    /// A node's public Admin service over the pooled channel (node-wide reports: status, targets).
    pub fn admin(
        &self,
        addr: &str,
    ) -> Result<pharos_proto::v1::admin_client::AdminClient<PeerChannel>, pharos_raft::network::TransportError> {
        Ok(pharos_proto::v1::admin_client::AdminClient::new(self.channels.channel(addr)?))
    }

    pub fn hint(&self, group: Group) -> Option<NodeId> {
        self.hints.read().expect("hints lock").get(&group).copied()
    }

    /// Drops the hint that `node` leads the group (it did not answer, or said it does not).
    pub fn forget_leader(&self, group: Group, node: NodeId) {
        let mut hints = self.hints.write().expect("hints lock");
        if hints.get(&group) == Some(&node) {
            hints.remove(&group);
        }
    }

    pub fn note_leader(&self, group: Group, leader: NodeId) {
        self.hints.write().expect("hints lock").insert(group, leader);
    }
}
