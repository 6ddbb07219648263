//! One typed client for node-to-node calls, with one retry policy.
//!
//! Every call that must reach a group's leader (a shard's write, a linearizable shard read, a meta command)
//! goes through [`Client::follow_leader`]: it calls the leader as best known (this node's replica's view,
//! then the last hint a reply gave, then the placement's first replica), and when the answer is a refusal
//! naming another leader, a node that cannot be reached, or a group between leaders, it notes the hint,
//! waits for the leader to change (or a backoff step) and tries again until the caller's deadline.
//! Failures cross the wire as [`CallError`] (the `CallError` message of `raft.proto`): callers decide on
//! its kind, never on its text.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use pharos_proto::internal as pb;
use pharos_raft::meta::{MetaCommand, MetaResponse};
use pharos_raft::{NodeId, Raft, Request, Response, META_GROUP};
use pharos_storage::{ApplyResult, Point};

pub use crate::error::{CallError, Group};
use crate::membership::{Members, MembershipOp};
use crate::meta::Meta;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::replicas::Replicas;
use crate::shard_rpc::{execute_local, ShardRequest, ShardResponse};

/// The node-to-node client: typed calls to one node, and the retry policy that finds a group's leader.
pub struct Client {
    me: NodeId,
    replicas: Arc<Replicas>,
    meta: Arc<Meta>,
    peers: Arc<Peers>,
    metrics: Arc<Metrics>,
}

impl Client {
    pub fn new(replicas: Arc<Replicas>, meta: Arc<Meta>, peers: Arc<Peers>, metrics: Arc<Metrics>) -> Client {
        Client { me: peers.me(), replicas, meta, peers, metrics }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Best guess of a group's leader: this node's replica's view, then the last hint, then (for a shard)
    /// its first replica.
    pub fn leader_of(&self, group: Group) -> Option<NodeId> {
        self.candidates(group).into_iter().next()
    }

    /// Where to look for a group's leader, best first: this node's replica's view, the last hint, then
    /// every replica (a shard's placement, the meta group's voters), each of which names the leader it
    /// knows when it is not.
    fn candidates(&self, group: Group) -> Vec<NodeId> {
        let mut out = Vec::with_capacity(5);
        let seen = match group {
            Group::Meta => self.meta.leader_seen(),
            Group::Shard(s) => self.replicas.leader_seen(s),
        };
        out.extend(seen);
        out.extend(self.peers.hint(group));
        match group {
            Group::Meta => out.extend(self.meta.raft.metrics().borrow().membership_config.membership().voter_ids()),
            Group::Shard(s) => out.extend(self.meta.placement().get(s as usize).into_iter().flatten().copied()),
        }
        let mut seen_ids = std::collections::BTreeSet::new();
        out.retain(|n| seen_ids.insert(*n));
        out
    }

    /// Calls `call(node)` on the group's leader as best known (or on this node when `local_ok()` says its
    /// replica will do), following refusals that name another leader and skipping nodes that do not
    /// answer, until `within` has passed. Non-retryable failures return at once.
    pub async fn follow_leader<T, F, Fut>(
        &self,
        group: Group,
        within: Duration,
        local_ok: impl Fn() -> bool,
        mut call: F,
    ) -> Result<T, CallError>
    where
        F: FnMut(NodeId) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let deadline = Instant::now() + within;
        let mut backoff = Duration::from_millis(20);
        // Nodes that did not answer, or did not know the leader, this time round: the next candidate is
        // tried instead (a dead leader's hint must not hold the call until its deadline).
        let mut passed: std::collections::BTreeSet<NodeId> = std::collections::BTreeSet::new();
        loop {
            let tried = if local_ok() {
                Some(self.me)
            } else {
                let candidates = self.candidates(group);
                if candidates.iter().all(|c| passed.contains(c)) {
                    passed.clear();
                }
                candidates.into_iter().find(|c| !passed.contains(c))
            };
            let res = match tried {
                Some(node) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // A leader that froze (SIGSTOP, a hung disk, a paused VM) keeps its connections open and
                    // answers nothing: the call is dropped as soon as this node's replica sees another leader
                    // elected, not at the deadline. (Resending is safe: a sample written twice is written once.)
                    tokio::select! {
                        r = tokio::time::timeout(left, call(node)) => match r {
                            Ok(r) => r,
                            Err(_) => Err(CallError::Unavailable {
                                node,
                                group,
                                why: format!("no answer within {}s", within.as_secs_f64()),
                            }),
                        },
                        l = self.leader_moved_from(group, node) => Err(CallError::NotLeader { node, group, leader: Some(l) }),
                    }
                }
                None => Err(CallError::NotLeader { node: self.me, group, leader: None }),
            };
            let e = match res {
                Ok(v) => return Ok(v),
                Err(e) if !e.retryable() => return Err(e),
                Err(e) => e,
            };
            match (e.leader_hint(), tried) {
                (Some(l), _) => {
                    self.peers.note_leader(group, l);
                    passed.remove(&l);
                }
                (None, Some(t)) => {
                    passed.insert(t);
                    self.peers.forget_leader(group, t);
                }
                (None, None) => {}
            }
            if Instant::now() + backoff > deadline {
                return Err(CallError::NoLeader { group, waited: within, last: Some(Box::new(e)) });
            }
            self.wait_for_new_leader(group, tried, backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// This node's member of `group`, if it holds one.
    fn local_raft(&self, group: Group) -> Option<Raft> {
        match group {
            Group::Meta => Some(self.meta.raft.clone()),
            Group::Shard(s) => self.replicas.get(s).map(|r| r.raft.clone()),
        }
    }

    /// Resolves with the new leader once this node's replica of `group` sees one other than `node` elected
    /// (a change from its view when called), or, on a node without a replica of the shard, once another
    /// replica names a leader other than `node`; never for this node itself.
    async fn leader_moved_from(&self, group: Group, node: NodeId) -> NodeId {
        match self.local_raft(group) {
            Some(raft) if node != self.me => {
                let mut metrics = raft.metrics();
                let initial = metrics.borrow().current_leader;
                let moved = metrics
                    .wait_for(|m| m.current_leader.is_some_and(|l| l != node) && m.current_leader != initial)
                    .await
                    .ok()
                    .and_then(|m| m.current_leader);
                match moved {
                    Some(l) => l,
                    None => std::future::pending().await,
                }
            }
            // No replica here to watch: ask the shard's other replicas who leads, every half second while
            // the call waits (a fast call never asks).
            None if node != self.me => {
                let Group::Shard(shard) = group else { return std::future::pending().await };
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // However many calls wait, one asks per shard at a time; the others take its answer.
                    match self.peers.asked_leader(shard) {
                        Some(Some(l)) if l != node => return l,
                        Some(_) => continue,
                        None => {}
                    }
                    let mut answer = None;
                    for other in self.candidates(group).into_iter().filter(|c| *c != node && *c != self.me) {
                        let ask = self.shard_call(other, shard, &ShardRequest::Status, false);
                        if let Ok(Ok(ShardResponse::Status(st))) =
                            tokio::time::timeout(Duration::from_millis(300), ask).await
                        {
                            if let Some(l) = st.leader.filter(|l| *l != node) {
                                answer = Some(l);
                                break;
                            }
                        }
                    }
                    self.peers.answer_leader(shard, answer);
                    if let Some(l) = answer {
                        return l;
                    }
                }
            }
            _ => std::future::pending().await,
        }
    }

    /// Waits up to `backoff` for the group to get a leader other than `tried`, as this node's replica sees
    /// it, so a call retries as soon as an election ends rather than at the next backoff step; at least a
    /// short pause, so a stale view does not spin.
    async fn wait_for_new_leader(&self, group: Group, tried: Option<NodeId>, backoff: Duration) {
        const PAUSE: Duration = Duration::from_millis(10);
        let Some(raft) = self.local_raft(group) else {
            tokio::time::sleep(backoff).await;
            return;
        };
        let mut metrics = raft.metrics();
        let started = Instant::now();
        let changed = metrics.wait_for(|m| m.current_leader.is_some_and(|l| Some(l) != tried));
        let _ = tokio::time::timeout(backoff, changed).await;
        tokio::time::sleep(PAUSE.min(backoff).saturating_sub(started.elapsed())).await;
    }

    fn connect(
        &self,
        node: NodeId,
        group: Group,
    ) -> Result<(String, pb::internal_client::InternalClient<pharos_raft::network::PeerChannel>), CallError> {
        let Some(addr) = self.peers.addr(node) else {
            return Err(CallError::Unreachable {
                node,
                addr: "address unknown".into(),
                source: format!("no address is known for node {node} (serving {group})").into(),
            });
        };
        let client = self.peers.channel(&addr).map_err(|e| CallError::Unreachable {
            node,
            addr: addr.clone(),
            source: Box::new(e),
        })?;
        Ok((addr, client))
    }

    /// A shard's write, sent to `node` (its leader, we believe).
    pub async fn forward_write(&self, node: NodeId, shard: u32, points: &[Point]) -> Result<ApplyResult, CallError> {
        let group = Group::Shard(shard);
        let (addr, mut client) = self.connect(node, group)?;
        self.metrics.forwarded_writes.inc();
        let req =
            pb::ForwardWriteRequest { shard, packed: pharos_storage::packed::to_vec(points), ..Default::default() };
        let reply = client.forward_write(req).await.map_err(|s| CallError::transport(node, &addr, s))?.into_inner();
        if let Some(e) = reply.error {
            return Err(CallError::from_proto(node, group, e));
        }
        Ok(ApplyResult {
            samples_written: reply.samples,
            rejected_too_old: reply.rejected_too_old,
            rejected_expired: reply.rejected_expired,
            series_created: reply.series_created,
            rejected_series_limit: reply.rejected_series_limit,
            series_limit: (!reply.series_limit.is_empty()).then_some(reply.series_limit),
        })
    }

    /// A request to one shard replica on `node`.
    pub async fn shard_call(
        &self,
        node: NodeId,
        shard: u32,
        req: &ShardRequest,
        linearizable: bool,
    ) -> Result<ShardResponse, CallError> {
        let group = Group::Shard(shard);
        let (addr, mut client) = self.connect(node, group)?;
        let request = pb::ForwardQueryRequest {
            shard,
            request: bincode::serialize(req).expect("requests serialize"),
            allow_stale: !linearizable,
        };
        let reply = client.forward_query(request).await.map_err(|s| CallError::transport(node, &addr, s))?.into_inner();
        if let Some(e) = reply.error {
            return Err(CallError::from_proto(node, group, e));
        }
        bincode::deserialize(&reply.response).map_err(|e| CallError::Failed {
            node,
            group,
            why: format!("undecodable answer: {e}"),
        })
    }

    /// Runs a request on the right replica of a shard anywhere in the cluster: the leader for a
    /// linearizable read; for a stale read this node's replica when it follows a live leader; for a status,
    /// this node's replica when it holds one.
    pub async fn shard_request(
        &self,
        shard: u32,
        req: &ShardRequest,
        linearizable: bool,
        within: Duration,
    ) -> Result<ShardResponse, CallError> {
        let local_ok = || match req {
            ShardRequest::Status => self.replicas.get(shard).is_some(),
            _ if linearizable => self.replicas.leads(shard),
            _ => self.replicas.serves_stale(shard),
        };
        self.follow_leader(Group::Shard(shard), within, local_ok, |node| async move {
            if node == self.me {
                execute_local(&self.replicas, &self.metrics, shard, req, linearizable).await
            } else {
                self.shard_call(node, shard, req, linearizable).await
            }
        })
        .await
    }

    /// Commits a command in the meta group, at its leader wherever it is.
    pub async fn meta_write(&self, cmd: &MetaCommand, within: Duration) -> Result<MetaResponse, CallError> {
        self.follow_leader(
            Group::Meta,
            within,
            || false,
            |node| async move {
                if node == self.me {
                    self.meta_commit_local(cmd.clone()).await
                } else {
                    self.forward_meta(node, cmd).await
                }
            },
        )
        .await
    }

    /// Commits a meta command on this node, which must lead the meta group (no forwarding: the caller
    /// follows the refusal's hint).
    pub async fn meta_commit_local(&self, cmd: MetaCommand) -> Result<MetaResponse, CallError> {
        let group = Group::Meta;
        match self.meta.raft.client_write(Request::Meta(cmd)).await {
            Ok(resp) => match resp.data {
                Response::Meta(m) => Ok(m),
                other => Err(CallError::Failed { node: self.me, group, why: format!("unexpected response {other:?}") }),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(CallError::NotLeader { node: self.me, group, leader: f.leader_id })
            }
            Err(e) => Err(CallError::Unavailable { node: self.me, group, why: e.to_string() }),
        }
    }

    async fn forward_meta(&self, node: NodeId, cmd: &MetaCommand) -> Result<MetaResponse, CallError> {
        let group = Group::Meta;
        let (addr, mut client) = self.connect(node, group)?;
        let payload = bincode::serialize(cmd).expect("meta commands serialize");
        let reply = client
            .forward_meta(pb::RaftRequest { group: META_GROUP, payload })
            .await
            .map_err(|s| CallError::transport(node, &addr, s))?
            .into_inner();
        if let Some(e) = reply.error {
            return Err(CallError::from_proto(node, group, e));
        }
        bincode::deserialize(&reply.payload).map_err(|e| CallError::Failed {
            node,
            group,
            why: format!("undecodable answer: {e}"),
        })
    }

    /// Runs a membership operation on the group's leader, wherever it is.
    pub async fn membership(&self, group: Group, op: &MembershipOp, within: Duration) -> Result<Members, CallError> {
        self.follow_leader(group, within, || false, |node| self.membership_at(node, group, op)).await
    }

    /// Runs a membership operation on `node`'s member of the group.
    pub async fn membership_at(&self, node: NodeId, group: Group, op: &MembershipOp) -> Result<Members, CallError> {
        if node == self.me {
            return crate::membership::execute_here(&self.meta, &self.replicas, group, op).await;
        }
        let (addr, mut client) = self.connect(node, group)?;
        let req = pb::MembershipRequest { group: group.id(), op: bincode::serialize(op).expect("ops serialize") };
        let reply = client.membership(req).await.map_err(|s| CallError::transport(node, &addr, s))?.into_inner();
        if let Some(e) = reply.error {
            return Err(CallError::from_proto(node, group, e));
        }
        bincode::deserialize(&reply.payload).map_err(|e| CallError::Failed {
            node,
            group,
            why: format!("undecodable answer: {e}"),
        })
    }

    /// Whether a node answers within a second (any answer, even "no replica here", means it runs).
    /// Whether a node answers within a second, and if so how far its wall clock is ahead of this node's
    /// (milliseconds, negative when behind; None from a node too old to say), measured as NTP does: against
    /// the middle of the round trip.
    pub async fn ping(&self, node: NodeId) -> Option<Option<i64>> {
        // The status of a shard no node holds: the cheapest request every node answers.
        let group = Group::Shard(u32::MAX);
        let (_, mut client) = self.connect(node, group).ok()?;
        let request = pb::ForwardQueryRequest {
            shard: u32::MAX,
            request: bincode::serialize(&ShardRequest::Status).expect("requests serialize"),
            allow_stale: true,
        };
        let sent = crate::clock::now_ms();
        let reply = tokio::time::timeout(Duration::from_secs(1), client.forward_query(request)).await.ok()?.ok()?;
        let received = crate::clock::now_ms();
        let theirs = reply.into_inner().now_ms;
        Some((theirs != 0).then(|| theirs - (sent + received) / 2))
    }
}

/// Runs `f` for every key at once, each on its own task, and returns the answers in key order (a request to
/// every shard, or to every node).
pub async fn fan_out<K, T, F, Fut>(keys: impl IntoIterator<Item = K>, f: F) -> Vec<(K, T)>
where
    K: Ord + Send + 'static,
    T: Send + 'static,
    F: Fn(&K) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for k in keys {
        let fut = f(&k);
        set.spawn(async move { (k, fut.await) });
    }
    let mut out = Vec::with_capacity(set.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(x) => out.push(x),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
