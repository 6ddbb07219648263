//! Leadership of one group as a watch, and actors scoped to it: a per-shard actor (maintenance, alert
//! evaluation) runs on the group's leader only, starts when this node wins an election and is
//! cancelled when it steps down.

use std::future::Future;

use openraft::ServerState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::types::Raft;

/// A receiver that holds `true` while this node leads the group. Ends when the group shuts down.
pub fn watch_leadership(raft: &Raft) -> watch::Receiver<bool> {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(metrics.borrow().state == ServerState::Leader);
    tokio::spawn(async move {
        while metrics.changed().await.is_ok() {
            let leads = metrics.borrow().state == ServerState::Leader;
            tx.send_if_modified(|v| std::mem::replace(v, leads) != leads);
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

/// Runs `actor()` each time this node becomes leader and aborts it when leadership is lost, until the group
/// shuts down. Each run starts fresh: an actor keeps what must survive a failover in the Raft state itself.
pub fn spawn_while_leader<F, Fut>(raft: &Raft, mut actor: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut leads = watch_leadership(raft);
    tokio::spawn(async move {
        loop {
            // Wait to become leader.
            if leads.wait_for(|l| *l).await.is_err() {
                return;
            }
            let run = tokio::spawn(actor());
            // Run until we step down (or the group ends).
            let ended = leads.wait_for(|l| !*l).await.is_err();
            run.abort();
            if ended {
                return;
            }
        }
    })
}
