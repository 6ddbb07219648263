//! The cluster's alerts as one view, for notification grouping across shards.
//!
//! Rule groups are evaluated on the shards the ring gives them, and each shard commits its rules' state in
//! its own Raft group. Notification groups (receiver + group labels, Alertmanager's grouping) span rule
//! groups, so they are dispatched from one place each: the leader of the shard the ring gives the group
//! key ([`owner`]). That dispatcher needs every shard's alerts. This view holds them: one per node, shared
//! by the dispatchers of the shards the node leads, refreshed by reading every shard's committed rule
//! state from its leader (linearizable reads: nothing is notified that is not committed) about once a
//! second, and at once when an evaluator on this node committed a change.
//!
//! A shard that does not answer keeps its last answer (an election takes a second or two; its alerts must
//! not look resolved meanwhile). Until every shard has answered once, the view says it is partial: a
//! dispatcher then notifies what it sees firing but resolves nothing by its absence (a shard without quorum
//! must not silence the alerts about it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pharos_alert::Alert;
use tokio::sync::{watch, Notify};

use super::store::{self, StoredRule};
use super::Alerting;

/// How often the view is read again without a change on this node.
const REFRESH: Duration = Duration::from_secs(1);
/// The shortest time between two reads (a burst of evaluations makes one read).
const MIN_GAP: Duration = Duration::from_millis(200);

pub struct ClusterView {
    shards: u32,
    /// Each shard's rules as its leader last answered.
    rules: Mutex<BTreeMap<u32, Vec<StoredRule>>>,
    /// Bumped after each round of reads; dispatchers wait on it.
    version: watch::Sender<u64>,
    kick: Notify,
}

/// The shard whose leader dispatches a notification group.
pub fn owner(router: &crate::routing::Router, group_key: &str) -> u32 {
    router.shard_of_name(&format!("notify/{group_key}"))
}

impl ClusterView {
    pub fn new(shards: u32) -> ClusterView {
        ClusterView { shards, rules: Mutex::new(BTreeMap::new()), version: watch::Sender::new(0), kick: Notify::new() }
    }

    /// Every firing or resolved alert of the shards that have answered, and whether that is every shard;
    /// None before any answered.
    pub fn alerts(&self, generator_url: &str) -> Option<(Vec<Alert>, bool)> {
        let rules = self.rules.lock().expect("view lock");
        if rules.is_empty() {
            return None;
        }
        let complete = rules.len() >= self.shards as usize;
        Some((rules.values().flatten().flat_map(|r| r.state.alerts(generator_url)).collect(), complete))
    }

    /// A receiver of refreshes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Asks for a read now (an evaluator on this node committed a change).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Reads the cluster's alerts while this node leads any shard (only leaders dispatch), until the node
    /// stops.
    pub async fn run(self: Arc<Self>, ctx: Arc<Alerting>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = self.kick.notified() => {}
            }
            let leads_any = ctx.replicas.all().iter().any(|r| r.leads());
            if !leads_any {
                // Not refreshed while it is not used: forgotten, so a dispatcher starting later never works
                // from an old view (see `dispatch::run`, which waits for fresh rounds).
                self.rules.lock().expect("view lock").clear();
                continue;
            }
            let answers = store::fetch_rules(&ctx.client, self.shards).await;
            {
                let mut rules = self.rules.lock().expect("view lock");
                for (shard, a) in answers {
                    match a {
                        Ok(r) => {
                            rules.insert(shard, r);
                        }
                        Err(e) => {
                            tracing::debug!(shard, cause = %e, "reading a shard's alerts; its last answer stands")
                        }
                    }
                }
            }
            // Every round counts (dispatchers wait for rounds that began after they started).
            self.version.send_modify(|v| *v += 1);
            tokio::time::sleep(MIN_GAP).await;
        }
    }
}
