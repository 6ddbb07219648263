//! Four nodes, three replicas per shard: each node holds no replica of some shards and forwards their
//! writes. When the leader of such a shard freezes (SIGSTOP), the forwarding node has no replica of its own
//! to see the election; it asks the shard's other replicas who leads while its call waits, so its writes
//! stall for an election, not for the write timeout.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cluster_tests::load::{assert_all_readable, Writer};
use cluster_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_node_without_a_replica_follows_a_frozen_leaders_successor() -> Result<()> {
    let c = Cluster::start(4, "").await?;
    let st = c.status(4).await?;
    // A shard node 4 holds no replica of, and its leader (not node 4).
    let shard =
        st.shards.iter().find(|s| !s.replicas.contains(&4) && s.leader != 0).context("a shard without node 4")?;
    let leader = shard.leader;
    println!("shard {} led by node {leader}, no replica on node 4", shard.shard);
    let w = Writer::start(&c, "f");
    w.only(&c, &[4]);
    w.wait_more(10).await?;
    let frozen_node = c.nodes.iter().position(|n| n.id == leader).context("the leader's process")?;
    c.nodes[frozen_node].signal("STOP")?;
    let frozen = Instant::now();
    w.wait_more(20).await?;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(frozen.elapsed())).await;
    c.nodes[frozen_node].signal("CONT")?;
    c.wait_healthy(Duration::from_secs(60)).await?;
    w.wait_more(10).await?;
    let gap = w.longest_gap();
    let acked = w.finish().await;
    println!("longest gap between writes through node 4 with shard {}'s leader frozen: {gap:?}", shard.shard);
    assert!(gap < Duration::from_secs(5), "writes through a node without a replica stalled {gap:?}");
    assert_all_readable(&c, &acked, &[1, 2, 3, 4]).await?;
    Ok(())
}
