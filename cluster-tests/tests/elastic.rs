//! The cluster changing under writes, on real `pharos` processes, driven from outside with `pharosctl`:
//! nodes join (`--join`) and a rebalance spreads replicas and leaders; a node drains and leaves; a dead
//! node's replicas are rebuilt on the others. Every acknowledged point stays readable through every node,
//! and writes never stop for more than 5 s.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use cluster_tests::load::{assert_all_readable, Writer};
use cluster_tests::{wait_for, Cluster};

const MAX_GAP: Duration = Duration::from_secs(5);

/// Replicas and leaders per node, from a status.
async fn spread(c: &Cluster, via: u64) -> Result<(BTreeMap<u64, usize>, BTreeMap<u64, usize>)> {
    let st = c.status(via).await?;
    let (mut replicas, mut leaders) = (BTreeMap::new(), BTreeMap::new());
    for sh in &st.shards {
        for r in &sh.replicas {
            *replicas.entry(*r).or_insert(0) += 1;
        }
        if sh.leader != 0 {
            *leaders.entry(sh.leader).or_insert(0) += 1;
        }
    }
    Ok((replicas, leaders))
}

fn even(counts: &BTreeMap<u64, usize>, nodes: &[u64]) -> bool {
    let per: Vec<usize> = nodes.iter().map(|n| counts.get(n).copied().unwrap_or(0)).collect();
    per.iter().max().unwrap_or(&0) - per.iter().min().unwrap_or(&0) <= 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_grow_from_3_to_5_nodes_with_join_and_rebalance_under_writes() -> Result<()> {
    // Founded with 8 shards; the joining nodes are not told and take the cluster's count.
    let mut c = Cluster::start(3, "shards = 8\n").await?;
    let w = Writer::start(&c, "g");
    w.wait_more(10).await?;

    // Node 4 lets the cluster pick its id; node 5 names its own.
    let four = c.join(1, None, "").await?;
    assert_eq!(four, 4, "the next free id");
    let five = c.join(2, Some(5), "").await?;
    w.all(&c);
    w.wait_more(10).await?;
    let list = c.pharosctl(1, &["node", "list"])?;
    assert!(list.contains("active") && list.lines().count() == 6, "{list}");
    // The meta group: 5 voters from 5 nodes.
    wait_for(Duration::from_secs(30), "five meta voters", || async {
        let st = c.status(1).await?;
        Ok((st.nodes.iter().filter(|n| n.meta_role == "voter").count() == 5).then_some(()))
    })
    .await?;
    // The new nodes hold nothing yet, and serve writes and queries by forwarding.
    let (replicas, _) = spread(&c, 4).await?;
    assert_eq!(replicas.get(&4), None);

    let plan = c.pharosctl(3, &["rebalance", "--dry-run"])?;
    assert!(plan.contains("-> node 4") && plan.contains("-> node 5"), "{plan}");
    let out = match c.pharosctl(3, &["rebalance"]) {
        Ok(o) => o,
        Err(e) => {
            for n in &c.nodes {
                eprintln!(
                    "---- node {} ----\n{}",
                    n.id,
                    n.log()
                        .lines()
                        .filter(|l| l.contains("leadership") || l.contains("move") || l.contains("WARN"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            return Err(e);
        }
    };
    assert!(out.contains("finished"), "{out}");
    println!("{out}");

    let nodes = [1, 2, 3, four, five];
    wait_for(Duration::from_secs(60), "replicas and leaders spread over five nodes", || async {
        let (r, l) = spread(&c, 1).await?;
        Ok((even(&r, &nodes) && even(&l, &nodes) && r.values().sum::<usize>() == 24).then_some(()))
    })
    .await?;
    w.wait_more(20).await?;
    let gap = w.longest_gap();
    let acked = w.finish().await;
    println!("longest gap between acknowledged writes while growing: {:.2} s", gap.as_secs_f64());
    assert!(gap < MAX_GAP, "writes stalled for {gap:?}");
    assert_all_readable(&c, &acked, &nodes).await?;
    // Each replica that moved away was deleted where it was.
    let moved = out.lines().filter(|l| l.contains(" replica node ")).count();
    let closed: usize = c.nodes.iter().map(|n| n.log().matches("replica closed and its data deleted").count()).sum();
    assert!(moved >= 9, "{out}");
    assert_eq!(closed, moved, "{out}");
    println!("{}", c.pharosctl(1, &["node", "list"])?);
    let status = c.pharosctl(1, &["rebalance", "status"])?;
    assert!(status.contains("0 failed"), "{status}");
    Ok(())
}

/// Three nodes and a fourth joined and given its share; `config` for every node.
async fn four_balanced(config: &str) -> Result<Cluster> {
    let mut c = Cluster::start(3, config).await?;
    c.join(1, Some(4), config).await?;
    c.pharosctl(1, &["rebalance"])?;
    Ok(c)
}

/// Every shard has `rf` replicas, all on `nodes`, each with a leader among them.
async fn placed_on(c: &Cluster, via: u64, nodes: &[u64], rf: usize) -> Result<Option<()>> {
    let st = c.status(via).await?;
    let ok = st.shards.iter().all(|sh| {
        sh.replicas.len() == rf && sh.replicas.iter().all(|r| nodes.contains(r)) && nodes.contains(&sh.leader)
    });
    Ok(ok.then_some(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_drain_then_remove_a_node_under_writes() -> Result<()> {
    let mut c = four_balanced("").await?;
    let w = Writer::start(&c, "d");
    w.wait_more(10).await?;

    // Drain: node 2 keeps its membership, loses every replica and leadership.
    let out = c.pharosctl(1, &["node", "drain", "2"])?;
    assert!(out.contains("finished"), "{out}");
    // Each move's leader exported the snapshot ahead, off its state-machine task.
    assert!(c.nodes.iter().any(|n| n.log().contains("snapshot exported ahead of a move")));
    wait_for(Duration::from_secs(30), "node 2 drained", || placed_on(&c, 1, &[1, 3, 4], 3)).await?;
    let list = c.pharosctl(3, &["node", "list", "--json"])?;
    let two: serde_json::Value =
        list.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["id"] == 2).unwrap();
    assert_eq!(
        (two["state"].as_str(), two["replicas"].as_u64(), two["leaders"].as_u64()),
        (Some("draining"), Some(0), Some(0))
    );
    w.wait_more(10).await?;

    // Remove: it leaves the meta group and the node list; the cluster goes on with three.
    let out = c.pharosctl(3, &["node", "remove", "2"])?;
    assert!(out.contains("node 2 left the cluster"), "{out}");
    let st = c.status(1).await?;
    assert!(st.nodes.iter().all(|n| n.id != 2), "{:?}", st.nodes);
    assert_eq!(st.meta.as_ref().map(|m| m.replicas.len()), Some(3), "meta voters {:?}", st.meta);
    w.only(&c, &[1, 3, 4]);
    c.node(2).kill();
    w.wait_more(20).await?;
    let gap = w.longest_gap();
    let acked = w.finish().await;
    println!("longest gap between acknowledged writes while draining and removing: {:.2} s", gap.as_secs_f64());
    assert!(gap < MAX_GAP, "writes stalled for {gap:?}");
    assert_all_readable(&c, &acked, &[1, 3, 4]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_dead_node_is_replaced_from_the_surviving_replicas() -> Result<()> {
    // Logs are purged soon after each snapshot, so the rebuilt replicas arrive as streamed snapshots.
    let mut c = four_balanced("[raft]\nsnapshot_after_entries = 20\nkeep_entries_after_snapshot = 2\n").await?;
    let w = Writer::start(&c, "x");
    w.wait_more(10).await?;
    // Node 3 dies for good: killed, its data directory gone.
    w.only(&c, &[1, 2, 4]);
    c.node(3).kill();
    std::fs::remove_dir_all(c.node(3).dir.path().join("data"))?;
    w.wait_more(10).await?;
    let out = c.pharosctl(1, &["node", "remove", "3", "--dead"])?;
    assert!(out.contains("node 3 left the cluster"), "{out}");
    wait_for(Duration::from_secs(30), "three replicas per shard on the survivors", || placed_on(&c, 2, &[1, 2, 4], 3))
        .await?;
    w.wait_more(20).await?;
    let acked = w.finish().await;
    assert_all_readable(&c, &acked, &[1, 2, 4]).await?;
    // Every replica on the survivors holds everything: stale (local) reads see every acknowledged point.
    for n in [1, 2, 4] {
        let got = c.export(n, "load", true).await?;
        let want = cluster_tests::load::expected(&acked);
        assert!(want.keys().all(|k| got.contains_key(k)), "node {n}'s replicas lack points");
    }
    let sent: usize =
        [1, 2, 4].iter().map(|&n| c.node(n).log().matches("snapshot exported for a replica").count()).sum();
    assert!(sent > 0, "the rebuilt replicas were expected to arrive as snapshots");
    Ok(())
}

/// Starts a rebalance without waiting, then waits until a move to or from `node` runs.
async fn rebalance_until_a_move_involves(c: &Cluster, via: u64, node: u64) -> Result<()> {
    c.pharosctl(via, &["rebalance", "--no-wait"])?;
    wait_for(Duration::from_secs(30), "a move under way", || async {
        let out = c.pharosctl(via, &["rebalance", "status", "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let running = v["running"].as_array().cloned().unwrap_or_default();
        Ok(running.iter().any(|r| r["move"]["to"] == node || r["move"]["from"] == node).then_some(()))
    })
    .await
}

async fn plan_finished(c: &Cluster, via: u64) -> Result<Option<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(&c.pharosctl(via, &["rebalance", "status", "--json"])?)?;
    let idle =
        v["running"].as_array().is_some_and(|r| r.is_empty()) && v["queued"].as_array().is_some_and(|q| q.is_empty());
    Ok(idle.then_some(v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_sigkill_the_target_of_a_move_then_restart_it() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    c.join(1, Some(4), "").await?;
    let w = Writer::start(&c, "t");
    w.wait_more(20).await?;
    w.only(&c, &[1, 2, 3]);
    rebalance_until_a_move_involves(&c, 1, 4).await?;
    c.node(4).kill();
    w.wait_more(10).await?;
    c.node(4).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    // The interrupted move completes once its target is back; the plan runs to the end.
    let v = wait_for(Duration::from_secs(90), "the plan to finish", || plan_finished(&c, 2)).await?;
    assert_eq!(v["failed"], 0, "{v}");
    let nodes = [1, 2, 3, 4];
    wait_for(Duration::from_secs(30), "replicas spread over four nodes", || async {
        let (r, _) = spread(&c, 1).await?;
        Ok((even(&r, &nodes) && r.values().sum::<usize>() == 48).then_some(()))
    })
    .await?;
    w.all(&c);
    w.wait_more(10).await?;
    let gap = w.longest_gap();
    let acked = w.finish().await;
    assert!(gap < MAX_GAP, "writes stalled for {gap:?}");
    assert_all_readable(&c, &acked, &nodes).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t45_sigkill_the_node_running_the_rebalance_mid_move() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    c.join(2, Some(4), "").await?;
    let w = Writer::start(&c, "m");
    w.wait_more(20).await?;
    // The executor runs on the meta group's leader: node 1, which founded it.
    let coordinator = c.status(2).await?.meta.map(|m| m.leader).unwrap_or(0);
    assert_ne!(coordinator, 0);
    let others: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|n| *n != coordinator).collect();
    w.only(&c, &others);
    rebalance_until_a_move_involves(&c, others[0], 4).await?;
    c.node(coordinator).kill();
    // Another node leads the meta group and carries the plan on.
    let v = wait_for(Duration::from_secs(90), "the plan to finish without its first coordinator", || {
        plan_finished(&c, others[0])
    })
    .await?;
    println!("plan after the coordinator's death: {v}");
    c.node(coordinator).start()?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    w.all(&c);
    // Moves that could not finish without the dead node were rolled back; a second rebalance completes.
    let out = c.pharosctl(others[0], &["rebalance"])?;
    assert!(out.contains("finished") || out.contains("balanced"), "{out}");
    let nodes = [1, 2, 3, 4];
    wait_for(Duration::from_secs(30), "replicas spread over four nodes", || async {
        let (r, _) = spread(&c, 2).await?;
        Ok((even(&r, &nodes) && r.values().sum::<usize>() == 48).then_some(()))
    })
    .await?;
    w.wait_more(10).await?;
    let acked = w.finish().await;
    assert_all_readable(&c, &acked, &nodes).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_rolling_restart_under_writes() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    let w = Writer::start(&c, "r");
    w.wait_more(10).await?;
    for id in [1, 2, 3] {
        let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != id).collect();
        w.only(&c, &rest);
        let st = c.node(id).terminate(Duration::from_secs(30))?;
        assert!(st.success(), "node {id} exited with {st}");
        c.node(id).start()?;
        c.wait_healthy(Duration::from_secs(60)).await?;
        // Back in step: every shard has a leader and the restarted node's replicas caught up.
        wait_for(Duration::from_secs(30), "every shard led, no replica behind", || async {
            let st = c.status(id).await?;
            Ok(st.shards.iter().all(|s| s.leader != 0 && s.lag.values().all(|l| *l < 100)).then_some(()))
        })
        .await?;
        w.all(&c);
        w.wait_more(10).await?;
    }
    let gap = w.longest_gap();
    let acked = w.finish().await;
    println!("longest gap between acknowledged writes in a rolling restart: {:.2} s", gap.as_secs_f64());
    assert!(gap < MAX_GAP, "writes stalled for {gap:?}");
    assert_all_readable(&c, &acked, &[1, 2, 3]).await?;
    Ok(())
}

/// Waits for the process to exit by itself; returns its log.
async fn exits(c: &mut Cluster, id: u64) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.node(id).running() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "node {id} still runs:\n{}", c.node(id).log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(c.node(id).log())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_node_whose_data_was_wiped_is_refused() -> Result<()> {
    let mut c = Cluster::start(3, "").await?;
    c.join(1, Some(4), "").await?;
    wait_for(Duration::from_secs(30), "every node recorded as a member", || async {
        Ok((c.status(1).await?.seen.len() == 4).then_some(()))
    })
    .await?;
    // A founding node and a joined one lose their data directories and come back under their old ids.
    for id in [2, 4] {
        c.node(id).kill();
        std::fs::remove_dir_all(c.node(id).dir.path().join("data"))?;
        c.node(id).start()?;
        let log = exits(&mut c, id).await?;
        assert!(log.contains(&format!("node {id} has run in this cluster before")) && log.contains("--dead"), "{log}");
    }
    // The cluster did not take them back and goes on.
    let st = c.status(1).await?;
    assert!(st.shards.iter().all(|s| s.leader != 0), "{:?}", st.shards);
    Ok(())
}
