//! Changes to a Raft group's membership, as one node asks another to run them: on the group's leader (add
//! or remove a learner, set the voters with joint consensus, report the members and how far each replica
//! has caught up), or on one replica (start an election, to move leadership there).

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use pharos_raft::{NodeAddr, NodeId, Raft};
use serde::{Deserialize, Serialize};

use crate::error::{CallError, Group};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MembershipOp {
    /// The members and each one's progress (leader).
    Members,
    /// Adds a learner; replication to it starts at once (leader). Idempotent.
    AddLearner {
        node: NodeId,
        addr: NodeAddr,
    },
    /// Makes exactly these nodes the voters, through a joint configuration; voters not named leave the
    /// group (leader). Idempotent. Every new voter must be a learner already.
    SetVoters(BTreeSet<NodeId>),
    /// Removes a learner (a move rolled back) (leader). Idempotent.
    RemoveLearner(NodeId),
    /// This replica starts an election now. Its higher term makes the leader step down at its next
    /// heartbeat; once the other replicas' leader lease runs out (an election timeout) it wins, provided
    /// its log is complete and the others hold their elections ([`MembershipOp::HoldElections`]). This is
    /// how leadership moves: openraft 0.9 has no leadership transfer.
    Elect,
    /// This replica starts no election of its own for `ms` milliseconds (it still votes), so that another
    /// one takes over; undone by [`MembershipOp::ResumeElections`] or when the time is up.
    HoldElections {
        ms: u64,
    },
    ResumeElections,
    /// This replica's shard writer holds its queue for `ms` milliseconds (the leader, during a leadership
    /// move: its log stops growing, so the replica taking over has all of it); undone by `ResumeWrites`.
    PauseWrites {
        ms: u64,
    },
    ResumeWrites,
    /// Exports the shard's snapshot now, for the replica about to be added (leader; a shard's only). Last
    /// of the variants, so a node of an older version refuses it as unknown (the move goes on without).
    PrepareSnapshot,
}

impl MembershipOp {
    /// Whether the group's leader must run it (else the replica it is sent to).
    pub fn on_leader(&self) -> bool {
        !matches!(
            self,
            MembershipOp::Elect
                | MembershipOp::HoldElections { .. }
                | MembershipOp::ResumeElections
                | MembershipOp::PauseWrites { .. }
                | MembershipOp::ResumeWrites
        )
    }
}

/// A group's members as its leader sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Members {
    pub leader: Option<NodeId>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// In a joint configuration (a membership change half done).
    pub joint: bool,
    pub last_log: u64,
    /// The last log index each replica holds (leader only).
    pub matched: BTreeMap<NodeId, u64>,
}

impl Members {
    /// Entries a replica is behind the leader's log (everything when unknown).
    pub fn behind(&self, node: NodeId) -> u64 {
        self.last_log.saturating_sub(self.matched.get(&node).copied().unwrap_or(0))
    }
}

fn members_of(raft: &Raft) -> Members {
    let m = raft.metrics().borrow().clone();
    let cfg = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = cfg.voter_ids().collect();
    let learners: BTreeSet<NodeId> = cfg.learner_ids().collect();
    let last_log = m.last_log_index.unwrap_or(0);
    let mut matched: BTreeMap<NodeId, u64> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, l)| (*id, l.map(|x| x.index).unwrap_or(0))).collect())
        .unwrap_or_default();
    if m.state == ServerState::Leader {
        matched.insert(m.id, last_log);
    }
    Members { leader: m.current_leader, voters, learners, joint: cfg.get_joint_config().len() > 1, last_log, matched }
}

/// Runs `op` on this node's member of `group` (`writer`: its shard writer, for a shard).
pub async fn execute_local(
    raft: &Raft,
    writer: Option<&crate::writer::ShardWriter>,
    me: NodeId,
    group: Group,
    op: &MembershipOp,
) -> Result<Members, CallError> {
    if op.on_leader() {
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(CallError::NotLeader { node: me, group, leader: m.current_leader.filter(|l| *l != me) });
        }
    }
    let refused = |e: RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            CallError::NotLeader { node: me, group, leader: f.leader_id }
        }
        // An earlier change not committed yet (a joint configuration under load, a new leader finishing it):
        // the same call succeeds once it is, so it is worth waiting out.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p))) => {
            CallError::Unavailable { node: me, group, why: p.to_string() }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            CallError::Failed { node: me, group, why: c.to_string() }
        }
        other => CallError::Unavailable { node: me, group, why: other.to_string() },
    };
    match op {
        // Only a shard's replica exports snapshots ahead (execute_here); elsewhere there is nothing to do.
        MembershipOp::Members | MembershipOp::PrepareSnapshot => {}
        MembershipOp::AddLearner { node, addr } => {
            let now = members_of(raft);
            if !now.voters.contains(node) && !now.learners.contains(node) {
                raft.add_learner(*node, addr.clone(), false).await.map_err(refused)?;
            }
        }
        MembershipOp::SetVoters(voters) => {
            let now = members_of(raft);
            if now.joint || now.voters != *voters || voters.iter().any(|v| now.learners.contains(v)) {
                raft.change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false)
                    .await
                    .map_err(refused)?;
            }
        }
        MembershipOp::RemoveLearner(node) => {
            let now = members_of(raft);
            if now.learners.contains(node) {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([*node])), false)
                    .await
                    .map_err(refused)?;
            }
        }
        MembershipOp::Elect => {
            raft.runtime_config().elect(true);
            raft.trigger().elect().await.map_err(|e| CallError::Unavailable { node: me, group, why: e.to_string() })?;
        }
        MembershipOp::HoldElections { ms } => {
            raft.runtime_config().elect(false);
            // Its timer releases only this hold: a later hold or resume makes it stale.
            let hold = next_hold(group);
            let (raft, ms) = (raft.clone(), (*ms).min(30_000));
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                if current_hold(group) == hold {
                    raft.runtime_config().elect(true);
                }
            });
        }
        MembershipOp::ResumeElections => {
            next_hold(group);
            raft.runtime_config().elect(true)
        }
        MembershipOp::PauseWrites { ms } => {
            if let Some(w) = writer {
                w.pause(*ms);
            }
        }
        MembershipOp::ResumeWrites => {
            if let Some(w) = writer {
                w.resume();
            }
        }
    }
    Ok(members_of(raft))
}

/// The latest election hold of each group on this node (a counter), so a hold's timer does not release a
/// later one.
fn holds() -> &'static std::sync::Mutex<std::collections::HashMap<Group, u64>> {
    static HOLDS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<Group, u64>>> =
        std::sync::OnceLock::new();
    HOLDS.get_or_init(Default::default)
}

fn next_hold(group: Group) -> u64 {
    let mut h = holds().lock().unwrap_or_else(|p| p.into_inner());
    let n = h.entry(group).or_insert(0);
    *n += 1;
    *n
}

fn current_hold(group: Group) -> u64 {
    holds().lock().unwrap_or_else(|p| p.into_inner()).get(&group).copied().unwrap_or(0)
}

/// Runs `op` on this node's member of `group`: the meta group's, or a shard replica's.
pub async fn execute_here(
    meta: &crate::meta::Meta,
    replicas: &crate::replicas::Replicas,
    group: Group,
    op: &MembershipOp,
) -> Result<Members, CallError> {
    let me = replicas.me();
    match group {
        Group::Meta => execute_local(&meta.raft, None, me, group, op).await,
        Group::Shard(s) => match replicas.get(s) {
            Some(r) if matches!(op, MembershipOp::PrepareSnapshot) => {
                let m = members_of(&r.raft);
                if m.leader != Some(me) {
                    return Err(CallError::NotLeader { node: me, group, leader: m.leader });
                }
                let t = std::time::Instant::now();
                let bytes = r.snapshots.prepare().await.map_err(|why| CallError::Failed { node: me, group, why })?;
                tracing::info!(shard = s, bytes, secs = t.elapsed().as_secs_f64(), "snapshot exported ahead of a move");
                Ok(m)
            }
            Some(r) => execute_local(&r.raft, Some(&r.writer), me, group, op).await,
            None => Err(CallError::NoReplica { node: me, group, leader: None }),
        },
    }
}
