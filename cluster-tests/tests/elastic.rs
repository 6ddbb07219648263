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
    let mut c = Cluster::start(3, "").await?;
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
        Ok((even(&r, &nodes) && even(&l, &nodes) && r.values().sum::<usize>() == 48).then_some(()))
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
    assert!(moved >= 18, "{out}");
    assert_eq!(closed, moved, "{out}");
    println!("{}", c.pharosctl(1, &["node", "list"])?);
    let status = c.pharosctl(1, &["rebalance", "status"])?;
    assert!(status.contains("0 failed"), "{status}");
    Ok(())
}
