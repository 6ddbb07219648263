//! Carrying out a rebalance: the plan and its progress live in the meta group (document `rebalance`), and
//! an executor on the meta group's leader runs each move, one at a time per shard and `max_concurrent` at
//! once, so a move survives the death of the node running it: the next meta leader picks it up where the
//! shard's membership says it stands.
//!
//! A replica move (shard s, from F to T), every step idempotent:
//! 1. T sees itself as the move's target in the plan and opens an empty replica of s (`Cluster::reconcile`);
//! 2. s's leader adds T as a learner; T receives a snapshot (or the log) and catches up;
//! 3. when F leads s, leadership moves to another replica first (an election it wins);
//! 4. s's leader makes the new replica set the voters (joint consensus), F leaves the group;
//! 5. the meta group records the new placement and the move's end in one command; F sees it no longer
//!    holds s and deletes its replica.
//!
//! A move that cannot finish within `move_timeout` (T down for good) is rolled back: T leaves the group as
//! a learner, the placement stays, and the plan counts the failure. Node states (draining, dead) are
//! document `nodes`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_raft::meta::{MetaCommand, MetaResponse, MetaState};
use pharos_raft::{NodeAddr, NodeId};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{chain, CallError, Group};
use crate::membership::{Members, MembershipOp};
use crate::meta::Meta;
use crate::placement::{Move, NodeState};
use crate::rpc::{fan_out, Client};
use crate::shard_rpc::{ShardRequest, ShardResponse};
use pharos_storage::formats::Formats;

pub const PLAN_DOC: &str = "rebalance";
pub const NODES_DOC: &str = "nodes";
/// Every node id that has run as a member (`BTreeSet<NodeId>`): a new data directory under one of these
/// ids lost its data and is refused.
pub const SEEN_DOC: &str = "seen";

pub fn seen(state: &MetaState) -> (BTreeSet<NodeId>, u64) {
    let d = state.doc(SEEN_DOC);
    (serde_json::from_slice(&d.bytes).unwrap_or_default(), d.version)
}

/// The entry and snapshot formats each member's build reads and writes (`BTreeMap<NodeId, Formats>`),
/// recorded by each node when it starts; a joining node must read what they write.
pub const FORMATS_DOC: &str = "formats";

pub fn formats(state: &MetaState) -> (BTreeMap<NodeId, Formats>, u64) {
    let d = state.doc(FORMATS_DOC);
    (serde_json::from_slice(&d.bytes).unwrap_or_default(), d.version)
}

/// Whether every member reads chunks with grid timestamps (members that recorded no formats run a build from
/// before formats were advertised, which does not).
pub fn grid_allowed(state: &MetaState, me: NodeId) -> bool {
    if !state.nodes.contains_key(&me) {
        return false; // not a member yet: this copy of the meta state may be empty
    }
    pharos_storage::formats::cluster_reads_grid(member_formats(state).iter().map(|(_, f)| f))
}

/// Each member's recorded formats; members that recorded none run a build from before formats were
/// advertised.
fn member_formats(state: &MetaState) -> Vec<(NodeId, Formats)> {
    let recorded = formats(state).0;
    let old = Formats::before_advertising();
    state.nodes.keys().map(|id| (*id, recorded.get(id).unwrap_or(&old).clone())).collect()
}

/// Keeps this node's codec writing grid timestamps exactly while every member reads them.
pub async fn follow_chunk_formats(meta: Arc<Meta>, me: NodeId) {
    let mut changes = meta.subscribe();
    loop {
        let on = grid_allowed(&meta.state(), me);
        if on != pharos_storage::codec::grid_timestamps_allowed() {
            tracing::info!(on, "grid timestamps in new chunks (every member reads them: {on})");
            pharos_storage::codec::allow_grid_timestamps(on);
        }
        crate::meta::changed_within(&mut changes, Duration::from_secs(5)).await;
    }
}

/// Why a node with `joiner`'s formats cannot join, if it cannot (see [`Formats::join_refusal`]). Members
/// that recorded none run a build from before formats were advertised.
pub fn join_refusal(state: &MetaState, joiner: &Formats, joiner_id: NodeId) -> Option<String> {
    let members = member_formats(state);
    joiner.join_refusal(members.iter().filter(|(id, _)| *id != joiner_id).map(|(id, f)| (*id, f)))
}

/// Nodes that are not plain active members, and those on their way out of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesDoc {
    pub states: BTreeMap<NodeId, NodeState>,
    /// `node remove`: leave the cluster once drained.
    pub removing: BTreeSet<NodeId>,
}

impl NodesDoc {
    pub fn read(state: &MetaState) -> (NodesDoc, u64) {
        let d = state.doc(NODES_DOC);
        (serde_json::from_slice(&d.bytes).unwrap_or_default(), d.version)
    }

    pub fn state_of(&self, node: NodeId) -> NodeState {
        self.states.get(&node).copied().unwrap_or(NodeState::Active)
    }
}

/// A rebalance plan and where it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: u64,
    pub planned: u32,
    pub queued: VecDeque<Move>,
    /// At most one per shard.
    pub running: BTreeMap<u32, Running>,
    pub done: u32,
    pub failed: u32,
    pub last_error: String,
    pub cancelled: bool,
    pub max_concurrent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub mv: Move,
    pub started_ms: i64,
    pub step: String,
}

impl Plan {
    pub fn read(state: &MetaState) -> (Plan, u64) {
        let d = state.doc(PLAN_DOC);
        (serde_json::from_slice(&d.bytes).unwrap_or_default(), d.version)
    }

    /// The shards whose new replica this node is to receive now.
    pub fn incoming(&self, me: NodeId) -> impl Iterator<Item = u32> + '_ {
        self.running.values().filter_map(move |r| match r.mv {
            Move::Replica { shard, to, .. } if to == me => Some(shard),
            _ => None,
        })
    }

    pub fn finished(&self) -> bool {
        self.queued.is_empty() && self.running.is_empty()
    }
}

fn put(kind: &str, value: &impl Serialize, version: u64) -> MetaCommand {
    MetaCommand::PutDoc {
        kind: kind.into(),
        bytes: serde_json::to_vec(value).expect("serializes"),
        expect: Some(version),
    }
}

/// Settings of the executor (`[rebalance]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_concurrent: u32,
    pub move_timeout: Duration,
    pub meta_within: Duration,
}

/// The cluster-change side of a node: plans, node states, and the executor.
pub struct Rebalancer {
    meta: Arc<Meta>,
    client: Arc<Client>,
    shards: u32,
    replication_factor: usize,
    settings: Settings,
}

impl Rebalancer {
    pub fn new(
        meta: Arc<Meta>,
        client: Arc<Client>,
        shards: u32,
        replication_factor: usize,
        settings: Settings,
    ) -> Rebalancer {
        Rebalancer { meta, client, shards, replication_factor, settings }
    }

    /// Reads a document, changes it, and commits it if nobody changed it meanwhile (else again).
    async fn update<T, R>(
        &self,
        read: impl Fn(&MetaState) -> (T, u64),
        kind: &str,
        mut change: impl FnMut(&mut T) -> R,
        extra: impl Fn(&T) -> Vec<MetaCommand>,
    ) -> Result<R, String>
    where
        T: Serialize,
    {
        for _ in 0..20 {
            let (mut doc, version) = read(&self.meta.state());
            let out = change(&mut doc);
            let mut cmds = extra(&doc);
            cmds.push(put(kind, &doc, version));
            let cmd = if cmds.len() == 1 { cmds.pop().expect("one") } else { MetaCommand::Batch(cmds) };
            match self.client.meta_write(&cmd, self.settings.meta_within).await {
                Ok(MetaResponse::Conflict(_)) => continue,
                Ok(MetaResponse::Rejected(why)) => return Err(why),
                Ok(_) => return Ok(out),
                Err(e) => return Err(chain(&e)),
            }
        }
        Err(format!("{kind}: too many concurrent changes; try again"))
    }

    /// Each shard's leader as the shards report it (None where no replica answered).
    pub async fn leaders(&self) -> Vec<Option<NodeId>> {
        let answers = fan_out(0..self.shards, |&s| {
            let client = self.client.clone();
            async move { client.shard_request(s, &ShardRequest::Status, false, Duration::from_secs(2)).await }
        })
        .await;
        answers
            .into_iter()
            .map(|(_, r)| match r {
                Ok(ShardResponse::Status(st)) => st.leader,
                _ => None,
            })
            .collect()
    }

    /// The moves that would even out the cluster now (nothing changes).
    pub async fn plan_now(&self) -> Vec<Move> {
        let state = self.meta.state();
        let (nodes, _) = NodesDoc::read(&state);
        let states: BTreeMap<NodeId, NodeState> = state.nodes.keys().map(|n| (*n, nodes.state_of(*n))).collect();
        let placement = self.meta.placement();
        crate::placement::plan(&placement, &self.leaders().await, &states, self.replication_factor)
    }

    /// Plans and starts a rebalance (replacing the queue of one in progress; running moves finish).
    pub async fn start(&self, max_concurrent: u32) -> Result<(u64, Vec<Move>), String> {
        let moves = self.plan_now().await;
        let max = if max_concurrent == 0 { self.settings.max_concurrent } else { max_concurrent };
        let queued = moves.clone();
        let id = self
            .update(
                Plan::read,
                PLAN_DOC,
                |p: &mut Plan| {
                    let running: BTreeSet<u32> = p.running.keys().copied().collect();
                    *p = Plan {
                        id: p.id + 1,
                        planned: queued.len() as u32,
                        queued: queued.iter().copied().filter(|m| !running.contains(&m.shard())).collect(),
                        running: std::mem::take(&mut p.running),
                        max_concurrent: max,
                        ..Default::default()
                    };
                    p.id
                },
                |_| vec![],
            )
            .await?;
        info!(plan = id, moves = moves.len(), "rebalance planned");
        Ok((id, moves))
    }

    /// Stops starting new moves (running ones finish).
    pub async fn cancel(&self) -> Result<(), String> {
        self.update(
            Plan::read,
            PLAN_DOC,
            |p: &mut Plan| {
                p.cancelled = true;
                p.queued.clear();
            },
            |_| vec![],
        )
        .await
    }

    /// Marks a node draining (and, with `remove`, leaving) or dead, then plans the moves that empty it.
    pub async fn drain(&self, node: NodeId, state: NodeState, remove: bool) -> Result<(u64, Vec<Move>), String> {
        if !self.meta.state().nodes.contains_key(&node) {
            return Err(format!("node {node} is not a member of this cluster (pharosctl node list shows them)"));
        }
        self.update(
            NodesDoc::read,
            NODES_DOC,
            |d: &mut NodesDoc| {
                d.states.insert(node, state);
                if remove {
                    d.removing.insert(node);
                }
            },
            |_| vec![],
        )
        .await?;
        self.start(0).await
    }

    /// The executor: runs on the meta group's leader while it leads.
    pub async fn run(self: Arc<Self>) {
        let mut tasks: HashMap<u32, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut changes = self.meta.subscribe();
        loop {
            tasks.retain(|_, t| !t.is_finished());
            let (plan, _) = Plan::read(&self.meta.state());
            let max = plan.max_concurrent.max(1) as usize;
            let next = plan.queued.iter().find(|m| !plan.running.contains_key(&m.shard())).copied();
            if !plan.cancelled && plan.running.len() < max && next.is_some() {
                let mv = next.expect("checked");
                let started = self
                    .update(
                        Plan::read,
                        PLAN_DOC,
                        |p: &mut Plan| {
                            p.queued.retain(|m| *m != mv);
                            p.running.insert(
                                mv.shard(),
                                Running { mv, started_ms: crate::clock::now_ms(), step: "starting".into() },
                            );
                        },
                        |_| vec![],
                    )
                    .await;
                if let Err(e) = started {
                    warn!(cause = %e, "starting a move");
                }
                continue;
            }
            for (shard, r) in &plan.running {
                if !tasks.contains_key(shard) {
                    let me = self.clone();
                    let mv = r.mv;
                    tasks.insert(*shard, tokio::spawn(async move { me.carry_out(mv).await }));
                }
            }
            if plan.finished() {
                self.finish_removals().await;
            }
            crate::meta::changed_within(&mut changes, Duration::from_secs(1)).await;
        }
    }

    async fn step(&self, shard: u32, step: &str) {
        let step = step.to_string();
        let _ = self
            .update(
                Plan::read,
                PLAN_DOC,
                |p: &mut Plan| {
                    if let Some(r) = p.running.get_mut(&shard) {
                        r.step = step.clone();
                    }
                },
                |_| vec![],
            )
            .await;
    }

    /// Runs one move to its end (or rolls it back) and records the outcome.
    async fn carry_out(&self, mv: Move) {
        let shard = mv.shard();
        let started = Instant::now();
        let outcome = self.drive(mv).await;
        let (ok, why) = match &outcome {
            Ok(()) => (true, String::new()),
            Err(e) => (false, format!("shard {shard}: {e}")),
        };
        if ok {
            info!(shard, ?mv, secs = started.elapsed().as_secs_f64(), "move done");
        } else {
            warn!(shard, ?mv, cause = %why, "move failed; rolled back");
            if let Move::Replica { to, .. } = mv {
                let op = MembershipOp::RemoveLearner(to);
                if let Err(e) = self.client.membership(Group::Shard(shard), &op, self.settings.meta_within).await {
                    warn!(shard, cause = %chain(&e), "rolling back: removing the new learner");
                }
            }
        }
        let new_voters = match (&outcome, mv) {
            (Ok(()), Move::Replica { from, to, .. }) => Some(replace_in(&self.meta.placement(), shard, from, Some(to))),
            (Ok(()), Move::Drop { from, .. }) => Some(replace_in(&self.meta.placement(), shard, Some(from), None)),
            _ => None,
        };
        let recorded = self
            .update(
                Plan::read,
                PLAN_DOC,
                |p: &mut Plan| {
                    p.running.remove(&shard);
                    if ok {
                        p.done += 1;
                    } else {
                        p.failed += 1;
                        p.last_error = why.clone();
                    }
                },
                |_| match &new_voters {
                    Some(v) => vec![MetaCommand::SetReplicas { shard, replicas: v.clone() }],
                    None => vec![],
                },
            )
            .await;
        if let Err(e) = recorded {
            warn!(shard, cause = %e, "recording a move's end; the next meta leader finishes it");
        }
    }

    async fn members(&self, shard: u32) -> Result<Members, CallError> {
        self.client.membership(Group::Shard(shard), &MembershipOp::Members, self.settings.meta_within).await
    }

    /// Sets the shard's voters, waiting out a busy or leaderless shard until `deadline` (a loaded cluster
    /// must not roll back a move whose data was already shipped); a retry after an attempt whose answer
    /// was lost finds the voters already set.
    async fn set_voters(&self, shard: u32, target: &BTreeSet<NodeId>, deadline: Instant) -> Result<(), CallError> {
        let op = MembershipOp::SetVoters(target.clone());
        loop {
            match self.client.membership(Group::Shard(shard), &op, self.settings.meta_within).await {
                Err(e) if e.transient() && Instant::now() < deadline => {
                    tracing::debug!(shard, cause = %chain(&e), "changing a shard's voters; waiting for the shard");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok(m) = self.members(shard).await {
                        if m.voters == *target && !m.joint {
                            return Ok(());
                        }
                    }
                }
                r => return r.map(|_| ()),
            }
        }
    }

    async fn drive(&self, mv: Move) -> Result<(), String> {
        let e = |e: CallError| chain(&e);
        let deadline = Instant::now() + self.settings.move_timeout;
        match mv {
            Move::Replica { shard, from, to } => {
                let group = Group::Shard(shard);
                let now = self.members(shard).await.map_err(e)?;
                let mut target: BTreeSet<NodeId> = now.voters.clone();
                if let Some(f) = from {
                    target.remove(&f);
                }
                target.insert(to);
                if now.voters == target && !now.joint {
                    return Ok(()); // done before (a new meta leader finishing it)
                }
                let addr = self.addr(to)?;
                if !now.learners.contains(&to) {
                    // The new replica needs a snapshot: the leader exports it now, so sending it holds up
                    // nothing (an export made when openraft asks stalls the shard's applies). Only a speed-up:
                    // a failure (an older leader, say) is logged and the move goes on.
                    self.step(shard, "exporting the snapshot").await;
                    let within = self.settings.move_timeout.min(Duration::from_secs(600));
                    if let Err(err) = self.client.membership(group, &MembershipOp::PrepareSnapshot, within).await {
                        tracing::warn!(shard, error = %chain(&err), "could not export the snapshot ahead; the move goes on");
                    }
                }
                self.step(shard, "adding learner").await;
                self.client
                    .membership(group, &MembershipOp::AddLearner { node: to, addr }, self.settings.meta_within)
                    .await
                    .map_err(e)?;
                self.step(shard, "catching up").await;
                loop {
                    let m = match self.members(shard).await {
                        Ok(m) => m,
                        Err(err) if err.transient() && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        Err(err) => return Err(e(err)),
                    };
                    // Caught up: within what one replication round carries.
                    if m.matched.contains_key(&to) && m.behind(to) <= 16 {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "node {to} did not catch up within {}s ({} entries behind)",
                            self.settings.move_timeout.as_secs(),
                            m.behind(to)
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                if let Some(f) = from {
                    self.lead_elsewhere(shard, f, &target).await;
                }
                self.step(shard, "changing membership").await;
                self.set_voters(shard, &target, deadline).await.map_err(e)
            }
            Move::Drop { shard, from } => {
                let now = self.members(shard).await.map_err(e)?;
                let target: BTreeSet<NodeId> = now.voters.iter().copied().filter(|v| *v != from).collect();
                if target.is_empty() {
                    return Err(format!("node {from} holds the last replica of shard {shard}"));
                }
                self.lead_elsewhere(shard, from, &target).await;
                self.step(shard, "changing membership").await;
                self.set_voters(shard, &target, deadline).await.map_err(e)
            }
            Move::Leader { shard, to, .. } => {
                self.step(shard, "moving leadership").await;
                // On a loaded machine the chosen replica can lose its election to timing (CI saw one
                // "did not take over" in a 3 -> 5 grow): try again before calling the move failed. A replica
                // that just joined the group lost three tries in a row once (CI, right after its replica
                // move): the last two come after the group has run 10 s without a move.
                let mut last = String::new();
                for attempt in 1..=5 {
                    match self.elect(shard, to).await {
                        Ok(()) => return Ok(()),
                        Err(why) => {
                            tracing::debug!(shard, attempt, cause = %why, "moving leadership; trying again");
                            last = why;
                        }
                    }
                    let pause = if attempt == 3 { 10 } else { 1 };
                    tokio::time::sleep(Duration::from_secs(pause)).await;
                }
                Err(last)
            }
        }
    }

    fn addr(&self, node: NodeId) -> Result<NodeAddr, String> {
        self.meta.state().nodes.get(&node).cloned().ok_or_else(|| format!("node {node} has no registered address"))
    }

    /// When `from` leads the shard, moves leadership to one of `to` (the successor the planner assumed)
    /// before `from` leaves. Best effort: a leader that leaves the voters steps down by itself, and the
    /// others elect one within an election timeout.
    async fn lead_elsewhere(&self, shard: u32, from: NodeId, to: &BTreeSet<NodeId>) {
        let Ok(now) = self.members(shard).await else { return };
        if now.leader != Some(from) {
            return;
        }
        self.step(shard, "moving leadership").await;
        let before = self.meta.placement().get(shard as usize).cloned().unwrap_or_default();
        let ordered: Vec<NodeId> = to.iter().copied().filter(|n| now.voters.contains(n)).collect();
        let Some(successor) = crate::placement::successor(&ordered, Some(&before)) else { return };
        if let Err(e) = self.elect(shard, successor).await {
            warn!(shard, cause = %e, "moving leadership before a replica leaves; it leaves as leader");
        }
    }

    /// Makes `to` lead the shard (openraft 0.9 has no leadership transfer, so this is one built from its
    /// parts): the leader's writer holds its queue so its log stops growing; once `to` holds all of it (no
    /// membership change half done) the other replicas hold their elections, the log is checked whole once
    /// more (maintenance entries do not wait for the writer), and `to` stands once. The leader steps down when it sees the higher term, and `to`, the only candidate with the whole
    /// log, wins once the others' leader lease runs out. Writes to the shard wait meanwhile (about an
    /// election timeout); then everything resumes.
    ///
    /// A try never stands a candidate whose log is short (it cannot win, and without pre-vote it would
    /// depose each leader the others elect: CI saw a shard without a leader for 13 s so), and a try that
    /// fails releases everything at once and waits for the shard to have a leader again, so a failure costs
    /// one election, not the whole move's time.
    async fn elect(&self, shard: u32, to: NodeId) -> Result<(), String> {
        let group = Group::Shard(shard);
        let now = self.members(shard).await.map_err(|e| chain(&e))?;
        if now.leader == Some(to) {
            return Ok(());
        }
        if !now.voters.contains(&to) {
            return Err(format!("node {to} is not a voter of shard {shard}"));
        }
        let Some(leader) = now.leader else { return Err(format!("shard {shard} has no leader")) };
        // Writes wait through the catch-up (1 s at most) and the election (4 s at most); released at once
        // when the try ends either way.
        let _ = self.client.membership_at(leader, group, &MembershipOp::PauseWrites { ms: 5_000 }).await;
        let quick = Duration::from_secs(1);
        let ready = |m: &Members| m.leader == Some(leader) && !m.joint && m.behind(to) == 0;
        let caught_up = Instant::now() + quick;
        let mut is_ready = false;
        while !is_ready && Instant::now() < caught_up {
            match self.client.membership_at(leader, group, &MembershipOp::Members).await {
                Ok(m) if ready(&m) => is_ready = true,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let others: Vec<NodeId> = now.voters.iter().copied().filter(|v| *v != to).collect();
        if is_ready {
            // Released below; the timeout only matters when this node dies mid-move.
            let hold = MembershipOp::HoldElections { ms: 6_000 };
            let holds = others.iter().map(|v| {
                let call = self.client.membership_at(*v, group, &hold);
                async move { (*v, tokio::time::timeout(quick, call).await) }
            });
            for (v, res) in futures::future::join_all(holds).await {
                if !matches!(res, Ok(Ok(_))) {
                    warn!(shard, node = v, "a replica did not hold its elections; the move waits");
                    is_ready = false;
                }
            }
            // The log must still be whole after the holds (maintenance does not wait for the writer).
            is_ready &= matches!(
                self.client.membership_at(leader, group, &MembershipOp::Members).await,
                Ok(m) if ready(&m)
            );
        }
        if !is_ready {
            self.release(shard, leader, &others).await;
            return Err(format!(
                "node {to} was not ready to take over shard {shard}: its log behind node {leader}'s after 1s, or a \
                 replica did not hold its elections"
            ));
        }
        let mut outcome = Err(format!("node {to} did not take over leadership of shard {shard} within 4s"));
        match self.client.membership_at(to, group, &MembershipOp::Elect).await {
            Err(e) => outcome = Err(format!("asking node {to} to take over shard {shard}: {}", chain(&e))),
            Ok(_) => {
                let settle = Instant::now() + Duration::from_secs(4);
                while Instant::now() < settle {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let seen = self.client.membership_at(to, group, &MembershipOp::Members).await;
                    if matches!(seen, Ok(m) if m.leader == Some(to)) {
                        outcome = Ok(());
                        break;
                    }
                }
            }
        }
        self.release(shard, leader, &others).await;
        if outcome.is_err() {
            // The next try starts from a group with a leader (any), not from a running election.
            let settled = Instant::now() + Duration::from_secs(5);
            while Instant::now() < settled {
                match self.client.membership(group, &MembershipOp::Members, quick).await {
                    Ok(m) if m.leader.is_some() => break,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        outcome
    }

    /// Ends a leadership try: the replicas' elections and the old leader's writes resume.
    async fn release(&self, shard: u32, leader: NodeId, others: &[NodeId]) {
        let group = Group::Shard(shard);
        let calls = others.iter().map(|v| self.client.membership_at(*v, group, &MembershipOp::ResumeElections));
        futures::future::join_all(calls).await;
        let _ = self.client.membership_at(leader, group, &MembershipOp::ResumeWrites).await;
    }

    /// Nodes being removed that hold no replica any more leave the meta group and the node list.
    async fn finish_removals(&self) {
        let state = self.meta.state();
        let (nodes, _) = NodesDoc::read(&state);
        for node in nodes.removing.iter().copied() {
            if state.shards.iter().any(|r| r.contains(&node)) {
                continue;
            }
            let meta =
                match self.client.membership(Group::Meta, &MembershipOp::Members, self.settings.meta_within).await {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(node, cause = %chain(&e), "removing a node: reading the meta group");
                        return;
                    }
                };
            let step = if meta.voters.contains(&node) {
                let mut voters: BTreeSet<NodeId> = meta.voters.iter().copied().filter(|v| *v != node).collect();
                // Keep the voter count: promote a learner in its place.
                if let Some(l) =
                    meta.learners.iter().copied().find(|l| *l != node && nodes.state_of(*l) == NodeState::Active)
                {
                    voters.insert(l);
                }
                MembershipOp::SetVoters(voters)
            } else {
                MembershipOp::RemoveLearner(node)
            };
            if let Err(e) = self.client.membership(Group::Meta, &step, self.settings.meta_within).await {
                warn!(node, cause = %chain(&e), "removing a node from the meta group");
                return;
            }
            let removed = self
                .update(
                    NodesDoc::read,
                    NODES_DOC,
                    |d: &mut NodesDoc| {
                        d.removing.remove(&node);
                        d.states.remove(&node);
                    },
                    |_| vec![MetaCommand::RemoveNode { id: node }],
                )
                .await;
            match removed {
                Ok(()) => info!(node, "node removed from the cluster"),
                Err(e) => warn!(node, cause = %e, "removing a node"),
            }
        }
    }

    /// Records that `node` runs as a member (once), and the formats its build reads and writes (when they
    /// change: an upgrade); retried until the meta group takes them.
    pub async fn mark_seen(&self, node: NodeId) {
        let mine = Formats::this_build();
        let mut wait = Duration::from_millis(200);
        let mut seen_done = false;
        loop {
            let mut changes = self.meta.subscribe();
            let state = self.meta.state();
            seen_done |= seen(&state).0.contains(&node);
            if seen_done && formats(&state).0.get(&node) == Some(&mine) {
                return;
            }
            let res = if !seen_done {
                self.update(seen, SEEN_DOC, |s: &mut BTreeSet<NodeId>| s.insert(node), |_| vec![])
                    .await
                    .map(|_| seen_done = true)
            } else {
                self.update(
                    formats,
                    FORMATS_DOC,
                    |f: &mut BTreeMap<NodeId, Formats>| f.insert(node, mine.clone()),
                    |_| vec![],
                )
                .await
                .map(|_| ())
            };
            match res {
                // The local copy of the meta state may not show the change yet: wait for it rather than
                // write again.
                Ok(()) => crate::meta::changed_within(&mut changes, Duration::from_secs(1)).await,
                Err(e) => {
                    tracing::debug!(cause = %e, "recording this node as a member; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Adds a joining node to the meta group: a learner that catches up, then a voter while the group has
    /// fewer voters than it should (3 from 3 nodes, 5 from 5).
    pub async fn admit(&self, node: NodeId, addr: NodeAddr) -> Result<(), CallError> {
        let within = self.settings.meta_within;
        self.client.membership(Group::Meta, &MembershipOp::AddLearner { node, addr }, within).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.client.membership(Group::Meta, &MembershipOp::Members, within).await?;
            if m.voters.contains(&node) {
                return Ok(());
            }
            if m.matched.contains_key(&node) && m.behind(node) <= 16 {
                let members = m.voters.len() + m.learners.len();
                let want = match members {
                    n if n >= 5 => 5,
                    n if n >= 3 => 3,
                    n => n,
                };
                if m.voters.len() < want {
                    let mut voters = m.voters.clone();
                    voters.extend(m.learners.iter().copied().take(want - m.voters.len()));
                    self.client.membership(Group::Meta, &MembershipOp::SetVoters(voters), within).await?;
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CallError::Unavailable {
                    node,
                    group: Group::Meta,
                    why: "did not catch up with the meta group within 30s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A shard's replicas with `from` replaced by `to` (either may be none), in the placement's order.
fn replace_in(placement: &[Vec<NodeId>], shard: u32, from: Option<NodeId>, to: Option<NodeId>) -> Vec<NodeId> {
    let mut r = placement.get(shard as usize).cloned().unwrap_or_default();
    match (from, to) {
        (Some(f), Some(t)) => {
            for x in r.iter_mut() {
                if *x == f {
                    *x = t;
                }
            }
            if !r.contains(&t) {
                r.push(t);
            }
        }
        (Some(f), None) => r.retain(|x| *x != f),
        (None, Some(t)) => {
            if !r.contains(&t) {
                r.push(t);
            }
        }
        (None, None) => {}
    }
    r
}
