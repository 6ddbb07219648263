//! This node's member of the meta group (membership, the shard placement, and the cluster's configuration
//! documents), and the applied state as a watch: readers take the current value, actors wait for the next.
//! Commands go through [`crate::rpc::Client::meta_write`], which forwards them to the group's leader.

use std::sync::Arc;
use std::time::Duration;

use pharos_raft::log_store::LogCache;
use pharos_raft::meta::MetaState;
use pharos_raft::{NodeId, Raft};
use tokio::sync::watch;

pub struct Meta {
    pub raft: Raft,
    /// The group's recent log entries, shared by its log store and its Raft transport.
    pub log_cache: LogCache,
    state: watch::Receiver<Arc<MetaState>>,
    /// The founding placement, used until the meta group has recorded one.
    founding: Vec<Vec<NodeId>>,
}

impl Meta {
    pub fn new(
        raft: Raft,
        log_cache: LogCache,
        state: watch::Receiver<Arc<MetaState>>,
        founding: Vec<Vec<NodeId>>,
    ) -> Meta {
        Meta { raft, log_cache, state, founding }
    }

    /// The applied state now.
    pub fn state(&self) -> Arc<MetaState> {
        self.state.borrow().clone()
    }

    /// A receiver of every applied change (`changed().await`), starting from the current state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaState>> {
        let mut rx = self.state.clone();
        rx.mark_changed();
        rx
    }

    /// Replicas of every shard: the meta group's record, else the founding placement.
    pub fn placement(&self) -> Vec<Vec<NodeId>> {
        let recorded = &self.state.borrow().shards;
        if recorded.is_empty() {
            self.founding.clone()
        } else {
            recorded.clone()
        }
    }

    /// The number of shards (the placement's length, without copying it).
    pub fn shard_count(&self) -> usize {
        match self.state.borrow().shards.len() {
            0 => self.founding.len(),
            n => n,
        }
    }

    pub fn founding_placement(&self) -> &[Vec<NodeId>] {
        &self.founding
    }

    /// The meta group's leader as this node sees it.
    pub fn leader_seen(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }
}

/// Waits until the meta state changes or `at_most` passes, whichever comes first (a group that stopped
/// never changes again: the full wait, not a spin).
pub async fn changed_within(rx: &mut watch::Receiver<Arc<MetaState>>, at_most: Duration) {
    let change = async {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await
        }
    };
    let _ = tokio::time::timeout(at_most, change).await;
}
