//! The rebalance planner: a pure function from today's shard placement, each shard's leader and each
//! node's state to the moves that (1) restore every shard's replication factor, (2) take replicas off
//! draining and dead nodes, (3) even out the replicas per node and (4) the leaders per node, with the fewest
//! moves. No I/O: the executor (`crate::rebalance`) carries the moves out one shard at a time.
//!
//! Rules every plan keeps (property tests below): never two replicas of a shard on one node; replicas only
//! on active nodes; `min(replication_factor, active nodes)` replicas per shard; afterwards the busiest and
//! the idlest active node differ by at most one replica and at most one leader; planning again over the
//! result plans nothing.

use std::collections::BTreeMap;

use pharos_raft::NodeId;
use serde::{Deserialize, Serialize};

/// A node as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Takes replicas.
    Active,
    /// Gives its replicas away (drain or remove): still up, so its replicas count until they moved.
    Draining,
    /// Gone for good: its replicas are rebuilt elsewhere from the surviving ones.
    Dead,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Move {
    /// A new replica of `shard` on `to`, replacing the one on `from` (`None`: a missing replica).
    Replica { shard: u32, from: Option<NodeId>, to: NodeId },
    /// The replica on `from` goes without a replacement (fewer active nodes than the replication factor).
    Drop { shard: u32, from: NodeId },
    /// The shard's leadership moves to `to`, which holds a replica.
    Leader { shard: u32, from: NodeId, to: NodeId },
}

impl Move {
    pub fn shard(&self) -> u32 {
        match *self {
            Move::Replica { shard, .. } | Move::Drop { shard, .. } | Move::Leader { shard, .. } => shard,
        }
    }
}

/// Plans the moves from `placement` (the replicas of each shard, by index) and `leaders` (each shard's
/// leader where known) for the nodes in `nodes`; a replica on a node missing from `nodes` counts as dead.
pub fn plan(
    placement: &[Vec<NodeId>],
    leaders: &[Option<NodeId>],
    nodes: &BTreeMap<NodeId, NodeState>,
    replication_factor: usize,
) -> Vec<Move> {
    let active: Vec<NodeId> = nodes.iter().filter(|(_, s)| **s == NodeState::Active).map(|(n, _)| *n).collect();
    if active.is_empty() {
        return Vec::new();
    }
    let rf = replication_factor.clamp(1, active.len());
    let is_active = |n: &NodeId| nodes.get(n) == Some(&NodeState::Active);
    let mut p: Vec<Vec<NodeId>> = placement.to_vec();
    let mut count: BTreeMap<NodeId, usize> = active.iter().map(|n| (*n, 0)).collect();
    for r in p.iter().flatten() {
        if let Some(c) = count.get_mut(r) {
            *c += 1;
        }
    }
    let mut moves = Vec::new();
    // The least loaded active node without a replica of the shard (lowest id on ties).
    let pick = |count: &BTreeMap<NodeId, usize>, replicas: &[NodeId]| {
        count.iter().filter(|(n, _)| !replicas.contains(n)).min_by_key(|(n, c)| (**c, **n)).map(|(n, _)| *n)
    };

    // 1. The replication factor first: replicas on dead or unknown nodes, then missing replicas; then
    //    replicas on draining nodes (still serving, so less urgent); excess replicas go last.
    for pass in [Pass::Dead, Pass::Missing, Pass::Draining, Pass::Excess] {
        for (s, replicas) in p.iter_mut().enumerate() {
            let shard = s as u32;
            match pass {
                Pass::Dead | Pass::Draining => {
                    let want_dead = pass == Pass::Dead;
                    let leaving: Vec<NodeId> = replicas
                        .iter()
                        .copied()
                        .filter(|r| !is_active(r) && (nodes.get(r) == Some(&NodeState::Draining)) != want_dead)
                        .collect();
                    for from in leaving {
                        let on_active = replicas.iter().filter(|r| is_active(r)).count();
                        match pick(&count, replicas) {
                            Some(to) if on_active < rf => {
                                moves.push(Move::Replica { shard, from: Some(from), to });
                                replace(replicas, from, to);
                                *count.get_mut(&to).expect("active") += 1;
                            }
                            _ => {
                                moves.push(Move::Drop { shard, from });
                                replicas.retain(|r| *r != from);
                            }
                        }
                    }
                }
                Pass::Missing => {
                    while replicas.len() < rf {
                        let Some(to) = pick(&count, replicas) else { break };
                        moves.push(Move::Replica { shard, from: None, to });
                        replicas.push(to);
                        *count.get_mut(&to).expect("active") += 1;
                    }
                }
                Pass::Excess => {
                    while replicas.len() > rf {
                        // From the busiest node holding one, not the leader when another will do.
                        let leader = leaders.get(s).copied().flatten();
                        let from = *replicas
                            .iter()
                            .max_by_key(|r| (Some(**r) != leader, count.get(r).copied().unwrap_or(0), **r))
                            .expect("more than one replica");
                        moves.push(Move::Drop { shard, from });
                        replicas.retain(|r| *r != from);
                        if let Some(c) = count.get_mut(&from) {
                            *c -= 1;
                        }
                    }
                }
            }
        }
    }

    // Who leads each shard once the replica moves are done: today's leader where it stays, else the first
    // remaining replica that was there before (a moved-in one has to catch up first); the executor hands
    // leadership to that successor before it removes a leading replica.
    let mut led: Vec<Option<NodeId>> = (0..p.len())
        .map(|s| match leaders.get(s).copied().flatten() {
            Some(l) if p[s].contains(&l) => Some(l),
            _ => successor(&p[s], placement.get(s)),
        })
        .collect();

    // 2. Even out the replicas: move one from the busiest to the idlest node until they differ by at most
    //    one, preferring a shard the busiest node does not lead (no leadership change).
    loop {
        let (&busiest, &most) = count.iter().max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n))).expect("active");
        let (&idlest, &least) = count.iter().min_by_key(|(n, c)| (**c, **n)).expect("active");
        if most <= least + 1 {
            break;
        }
        let candidates = || (0..p.len()).filter(|&s| p[s].contains(&busiest) && !p[s].contains(&idlest));
        let s = candidates()
            .find(|&s| led[s] != Some(busiest))
            .or_else(|| candidates().next())
            .expect("the busiest node holds a shard the idlest does not");
        moves.push(Move::Replica { shard: s as u32, from: Some(busiest), to: idlest });
        replace(&mut p[s], busiest, idlest);
        if led[s] == Some(busiest) {
            led[s] = successor(&p[s], placement.get(s));
        }
        *count.get_mut(&busiest).expect("active") -= 1;
        *count.get_mut(&idlest).expect("active") += 1;
    }

    // 3. Even out the leaders: hand leadership along the shortest chain from a busiest node to one that
    //    leads at least two fewer (each hop: a shard one node leads, to another of its replicas), so the
    //    nodes in between keep their count.
    let mut leads: BTreeMap<NodeId, usize> = active.iter().map(|n| (*n, 0)).collect();
    for l in led.iter().flatten() {
        if let Some(c) = leads.get_mut(l) {
            *c += 1;
        }
    }
    loop {
        let most = *leads.values().max().expect("active");
        let least = *leads.values().min().expect("active");
        if most <= least + 1 {
            break;
        }
        // Breadth-first from every busiest node; `via[n]` = (shard, previous node) of the hop into n.
        let mut via: BTreeMap<NodeId, (usize, NodeId)> = BTreeMap::new();
        let mut queue: std::collections::VecDeque<NodeId> =
            leads.iter().filter(|(_, c)| **c == most).map(|(n, _)| *n).collect();
        let mut seen: std::collections::BTreeSet<NodeId> = queue.iter().copied().collect();
        let mut end = None;
        while let Some(u) = queue.pop_front() {
            if leads[&u] + 2 <= most {
                end = Some(u);
                break;
            }
            for (s, r) in p.iter().enumerate().filter(|(s, _)| led[*s] == Some(u)) {
                for &v in r {
                    if leads.contains_key(&v) && seen.insert(v) {
                        via.insert(v, (s, u));
                        queue.push_back(v);
                    }
                }
            }
        }
        let Some(mut v) = end else { break };
        let mut hops = Vec::new();
        while let Some(&(s, u)) = via.get(&v) {
            hops.push(Move::Leader { shard: s as u32, from: u, to: v });
            v = u;
        }
        for m in hops.into_iter().rev() {
            if let Move::Leader { shard, from, to } = m {
                led[shard as usize] = Some(to);
                *leads.get_mut(&from).expect("active") -= 1;
                *leads.get_mut(&to).expect("active") += 1;
            }
            moves.push(m);
        }
    }
    moves
}

/// Who takes over a shard whose leader's replica left: the first remaining replica that was there before,
/// else the first.
pub fn successor(replicas: &[NodeId], before: Option<&Vec<NodeId>>) -> Option<NodeId> {
    replicas.iter().copied().find(|r| before.is_some_and(|b| b.contains(r))).or(replicas.first().copied())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Dead,
    Missing,
    Draining,
    Excess,
}

fn replace(replicas: &mut [NodeId], from: NodeId, to: NodeId) {
    for r in replicas.iter_mut() {
        if *r == from {
            *r = to;
        }
    }
}

/// The placement and leaders after a plan's moves.
pub fn apply(
    placement: &[Vec<NodeId>],
    leaders: &[Option<NodeId>],
    moves: &[Move],
) -> (Vec<Vec<NodeId>>, Vec<Option<NodeId>>) {
    let mut p = placement.to_vec();
    let mut l = leaders.to_vec();
    l.resize(p.len(), None);
    for m in moves {
        match *m {
            Move::Replica { shard, from, to } => {
                let r = &mut p[shard as usize];
                match from {
                    Some(f) => replace(r, f, to),
                    None => r.push(to),
                }
                if from.is_some() && l[shard as usize] == from {
                    l[shard as usize] = None;
                }
            }
            Move::Drop { shard, from } => {
                p[shard as usize].retain(|r| *r != from);
                if l[shard as usize] == Some(from) {
                    l[shard as usize] = None;
                }
            }
            Move::Leader { shard, to, .. } => l[shard as usize] = Some(to),
        }
    }
    (p, l)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn active(ids: &[NodeId]) -> BTreeMap<NodeId, NodeState> {
        ids.iter().map(|n| (*n, NodeState::Active)).collect()
    }

    /// Leaders as the executor would see them after the moves: where a leader left, the first replica
    /// that was there before.
    fn settle(placement: &[Vec<NodeId>], before: &[Vec<NodeId>], leaders: &[Option<NodeId>]) -> Vec<Option<NodeId>> {
        placement
            .iter()
            .enumerate()
            .map(|(s, r)| match leaders[s] {
                Some(l) if r.contains(&l) => Some(l),
                _ => successor(r, before.get(s)),
            })
            .collect()
    }

    #[test]
    fn a_fourth_node_gets_its_share_of_replicas_and_leaders() {
        let nodes = [1, 2, 3];
        let p = pharos_raft::meta::initial_placement(&nodes, 16, 3);
        let leaders: Vec<Option<NodeId>> = p.iter().map(|r| r.first().copied()).collect();
        let states = active(&[1, 2, 3, 4]);
        let moves = plan(&p, &leaders, &states, 3);
        let (after, led) = apply(&p, &leaders, &moves);
        let per_node = |n| after.iter().filter(|r| r.contains(&n)).count();
        // 48 replicas over 4 nodes: 12 each; node 4 gets 12, nothing else moves.
        assert_eq!(per_node(4), 12);
        assert_eq!(moves.iter().filter(|m| matches!(m, Move::Replica { .. })).count(), 12);
        let led = settle(&after, &p, &led);
        let leads = |n| led.iter().filter(|l| **l == Some(n)).count();
        assert!((3..=4).contains(&leads(4)), "node 4 leads {}", leads(4));
    }

    #[test]
    fn a_dead_nodes_replicas_are_rebuilt_before_anything_else() {
        let p = vec![vec![1, 2, 3], vec![2, 3, 4], vec![3, 4, 1], vec![4, 1, 2]];
        let leaders = vec![Some(1), Some(2), Some(3), Some(4)];
        let mut states = active(&[1, 2, 3, 4, 5]);
        states.insert(4, NodeState::Dead);
        let moves = plan(&p, &leaders, &states, 3);
        // The first moves replace every replica on node 4, and they go to node 5 (the idlest).
        let first: Vec<Move> = moves.iter().take(3).copied().collect();
        assert!(first.iter().all(|m| matches!(m, Move::Replica { from: Some(4), to: 5, .. })), "{moves:?}");
    }

    #[test]
    fn draining_one_of_three_nodes_drops_its_replicas() {
        let p = pharos_raft::meta::initial_placement(&[1, 2, 3], 4, 3);
        let leaders = vec![Some(1), Some(2), Some(3), Some(1)];
        let mut states = active(&[1, 2, 3]);
        states.insert(3, NodeState::Draining);
        let moves = plan(&p, &leaders, &states, 3);
        let (after, _) = apply(&p, &leaders, &moves);
        assert!(after.iter().all(|r| r.len() == 2 && !r.contains(&3)), "{after:?}");
    }

    fn arb_cluster(
    ) -> impl Strategy<Value = (Vec<Vec<NodeId>>, Vec<Option<NodeId>>, BTreeMap<NodeId, NodeState>, usize)> {
        (1usize..9, 1u32..40, 1usize..5).prop_flat_map(|(nodes, shards, rf)| {
            let ids: Vec<NodeId> = (1..=nodes as NodeId + 2).collect();
            let replicas = proptest::sample::subsequence(ids.clone(), 0..=rf.min(ids.len()));
            let placement = proptest::collection::vec(replicas, shards as usize);
            let states = proptest::collection::vec(
                prop_oneof![
                    6 => Just(NodeState::Active),
                    1 => Just(NodeState::Draining),
                    1 => Just(NodeState::Dead)
                ],
                nodes,
            );
            (placement, states, Just(rf), any::<u64>()).prop_map(move |(placement, states, rf, seed)| {
                // Node ids past `nodes` are in the placement but unknown (count as dead).
                let states: BTreeMap<NodeId, NodeState> =
                    states.into_iter().enumerate().map(|(i, s)| (i as NodeId + 1, s)).collect();
                let leaders = placement
                    .iter()
                    .enumerate()
                    .map(|(i, r): (usize, &Vec<NodeId>)| {
                        (!r.is_empty()).then(|| r[(seed as usize + i) % r.len()]).filter(|_| seed % 7 != 0)
                    })
                    .collect();
                (placement, leaders, states, rf)
            })
        })
    }

    proptest! {
        #[test]
        fn plans_keep_every_rule((placement, leaders, states, rf) in arb_cluster()) {
            let moves = plan(&placement, &leaders, &states, rf);
            let (after, led) = apply(&placement, &leaders, &moves);
            let active: Vec<NodeId> =
                states.iter().filter(|(_, s)| **s == NodeState::Active).map(|(n, _)| *n).collect();
            if active.is_empty() {
                prop_assert!(moves.is_empty());
                return Ok(());
            }
            let want = rf.min(active.len());
            for (s, r) in after.iter().enumerate() {
                let distinct: BTreeSet<_> = r.iter().collect();
                prop_assert_eq!(distinct.len(), r.len(), "shard {} has two replicas on one node: {:?}", s, r);
                prop_assert!(r.iter().all(|n| active.contains(n)), "shard {} on a node that is not active: {:?}", s, r);
                prop_assert_eq!(r.len(), want, "shard {}: {:?}", s, r);
            }
            // Replicas even: the busiest and idlest active nodes differ by at most one.
            let per: Vec<usize> = active.iter().map(|n| after.iter().filter(|r| r.contains(n)).count()).collect();
            prop_assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "replicas per node {:?}", per);
            // Leaders even, counting the leaders the executor will find.
            let led = settle(&after, &placement, &led);
            let leads: Vec<usize> = active.iter().map(|n| led.iter().filter(|l| **l == Some(*n)).count()).collect();
            prop_assert!(leads.iter().max().unwrap() - leads.iter().min().unwrap() <= 1, "leaders per node {:?}", leads);
            // A leader move goes to a replica of the shard.
            for m in &moves {
                if let Move::Leader { shard, to, .. } = m {
                    prop_assert!(after[*shard as usize].contains(to));
                }
            }
            // Nothing left to do: planning over the result plans nothing.
            let again = plan(&after, &led, &states, rf);
            prop_assert!(again.is_empty(), "second plan {:?}", again);
        }

        /// Evening out a healthy cluster takes the fewest replica moves: as many as the larger of the
        /// replicas above the per-node ceiling and those missing below the floor.
        #[test]
        fn evening_out_takes_the_fewest_moves(nodes in 2usize..8, added in 1usize..4, shards in 1u32..64, rf in 1usize..4) {
            let rf = rf.min(nodes);
            let old: Vec<NodeId> = (1..=nodes as NodeId).collect();
            let all: Vec<NodeId> = (1..=(nodes + added) as NodeId).collect();
            let p = pharos_raft::meta::initial_placement(&old, shards, rf);
            let leaders: Vec<Option<NodeId>> = p.iter().map(|r| r.first().copied()).collect();
            let moves = plan(&p, &leaders, &active(&all), rf);
            let replica_moves = moves.iter().filter(|m| matches!(m, Move::Replica { .. })).count();
            let total: usize = p.iter().map(|r| r.len()).sum();
            let (floor, ceil) = (total / all.len(), total.div_ceil(all.len()));
            let per = |n: NodeId| p.iter().filter(|r| r.contains(&n)).count();
            let above: usize = all.iter().map(|n| per(*n).saturating_sub(ceil)).sum();
            let below: usize = all.iter().map(|n| floor.saturating_sub(per(*n))).sum();
            prop_assert_eq!(replica_moves, above.max(below));
        }
    }
}
