//! Leadership-scoped actors on a real single-node group over RocksDB.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pharos_raft::leadership::{spawn_while_leader, watch_leadership};
use pharos_raft::log_store::LogStore;
use pharos_raft::meta::MetaStateMachine;
use pharos_raft::network::{Channels, Network};
use pharos_raft::{NodeAddr, Raft, RaftSettings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_runs_while_leader_and_stops_with_the_group() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = pharos_storage::db::open(dir.path(), &Default::default()).unwrap();
    let sm = MetaStateMachine::open(db.clone(), 0, pharos_raft::spool::Spool::new(dir.path().join("spool")).unwrap())
        .unwrap();
    let cfg = RaftSettings::default().to_openraft("t").unwrap();
    let log = LogStore::new(db, 0);
    let net = Network { group: 0, channels: Channels::default(), cache: log.cache() };
    let raft = Raft::new(1, cfg, net, log, sm).await.unwrap();
    let mut leads = watch_leadership(&raft);
    assert!(!*leads.borrow(), "not leader before initialization");
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let task = spawn_while_leader(&raft, move || {
        let t = t.clone();
        async move {
            loop {
                t.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), 0, "the actor waits for leadership");
    raft.initialize(BTreeMap::from([(1, NodeAddr::default())])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), leads.wait_for(|l| *l)).await.expect("becomes leader").unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while ticks.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the actor runs on the leader");
    raft.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the scope ends with the group").unwrap();
    let after = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), after, "the actor was stopped");
}
